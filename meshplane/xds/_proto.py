"""The few protobuf runtime names meshplane.xds uses, imported in one place.

``google.protobuf`` ships no type information here (no ``types-protobuf``), so the one
``type: ignore`` lives in this module rather than in every importer.
"""

from google.protobuf import any_pb2, json_format
from google.protobuf.message import Message

__all__ = ["Message", "any_pb2", "json_format"]
