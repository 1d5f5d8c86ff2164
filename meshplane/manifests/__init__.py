"""Kubernetes manifests of the App Mesh controller (``appmesh.k8s.aws/v1beta2``) as App Mesh
resources.

``load_paths``/``parse_documents`` read YAML or JSON documents into ``Manifest`` values;
``translate`` turns the whole set into ``DesiredResource`` values (App Mesh keys and API
specs) the way the App Mesh controller would, or raises ``ManifestError`` naming the file,
document, object and field of every problem.  Pure apart from reading the given files.

Used by the server's apply endpoint and the CLI (``meshplane apply -f``, ``meshplane diff``).
"""

from meshplane.manifests.conversion import (
    SUPPORTED_VERSION,
    DesiredResource,
    Translation,
    default_aws_name,
    translate,
)
from meshplane.manifests.documents import (
    Manifest,
    ManifestLimits,
    files_under,
    load_paths,
    parse_documents,
    read_file,
)
from meshplane.manifests.errors import ManifestError

__all__ = [
    "SUPPORTED_VERSION",
    "DesiredResource",
    "Manifest",
    "ManifestError",
    "ManifestLimits",
    "Translation",
    "default_aws_name",
    "files_under",
    "load_paths",
    "parse_documents",
    "read_file",
    "translate",
]
