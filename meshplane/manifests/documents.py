"""Reading Kubernetes documents: files, directories and stdin into ``Manifest`` values.

YAML streams (``---`` separated) and JSON are accepted, as ``kubectl apply -f`` accepts them.
Values are read the way Kubernetes reads them (sigs.k8s.io/yaml): timestamps stay strings,
duplicate keys are an error, and anything that is not plain JSON data is refused.  ``List``
documents (``kind: List`` and ``kind: <X>List`` with ``items``) are expanded into their items.
The only module of ``meshplane.manifests`` that touches the file system (``load_paths``).

Called by the CLI (``meshplane apply -f``) and the server's apply endpoint; the result goes to
``meshplane.manifests.conversion``.
"""

from __future__ import annotations

import json
import math
import os
import stat
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import yaml

from meshplane.manifests.errors import ManifestError, Path, clipped, format_path, shown
from meshplane.model.common import lone_surrogate

APPMESH_GROUP = "appmesh.k8s.aws"
_CLUSTER_SCOPED = {(APPMESH_GROUP, "Mesh"), ("", "Namespace")}
_EXTENSIONS = (".yaml", ".yml", ".json")
_MAX_DEPTH = 200
MiB = 1024 * 1024


@dataclass(frozen=True, slots=True)
class ManifestLimits:
    """What one apply may hold (defaults: far above any real set of manifests; the
    Kubernetes API server refuses objects over 1.5 MiB and requests over 3 MiB)."""

    max_documents: int = 10_000
    """Documents in one apply (empty ones between ``---`` separators count)."""
    max_object_size: int = 1 * MiB
    """Bytes of one object as JSON, YAML aliases expanded: what is stored and served back."""
    max_aliases: int = 1_000
    """YAML alias uses (``*name``) in one stream."""
    max_file_size: int = 16 * MiB
    """Bytes of one file ``meshplane apply -f`` reads."""


@dataclass(frozen=True)
class Manifest:
    """One Kubernetes object as the user wrote it, and where it came from."""

    source: str
    index: int
    api_version: str
    kind: str
    name: str
    namespace: str | None
    body: Mapping[str, Any] = field(hash=False, repr=False)
    item: int | None = None
    """Position inside the ``items`` of a List document, None for a top-level object."""

    @classmethod
    def stored(
        cls, kind: str, namespace: str, name: str, body: Mapping[str, Any], source: str
    ) -> Manifest:
        """A manifest as the store keeps it (``source`` is ``file#index``; '' namespace: none)."""
        file, _, index = source.rpartition("#")
        if not file or not index.isdigit():  # stored without its document index
            file, index = source, "0"
        return cls(
            source=file,
            index=int(index),
            api_version=str(body.get("apiVersion", "")),
            kind=kind,
            name=name,
            namespace=namespace or None,
            body=body,
        )

    @property
    def group(self) -> str:
        """The API group (``appmesh.k8s.aws``), '' for the core group (``v1``)."""
        return self.api_version.rpartition("/")[0]

    @property
    def identity(self) -> tuple[str, str, str, str]:
        """What makes two manifests the same Kubernetes object: group, kind, namespace, name."""
        return (self.group, self.kind, self.namespace or "", self.name)

    def ref(self) -> str:
        """``app.yaml#2 VirtualNode service-ns/service-v1``, used at the start of messages."""
        where = f"{self.source}#{self.index}"
        if self.item is not None:
            where += f" items[{self.item}]"
        name = f"{self.namespace}/{self.name}" if self.namespace is not None else self.name
        return f"{where} {clipped(self.kind)} {clipped(name)}"

    def error(self, path: Path, message: str) -> ManifestError:
        """A ``ManifestError`` about the field at ``path`` of this manifest."""
        if path:
            return ManifestError(f"{self.ref()}: {format_path(path)}: {message}")
        return ManifestError(f"{self.ref()}: {message}")


def load_paths(
    paths: Sequence[str], stdin_text: str | None = None, limits: ManifestLimits | None = None
) -> list[Manifest]:
    """The manifests in files, directories (recursive, sorted) and ``-`` (standard input).
    Only regular files are read (:func:`read_file`); in a directory, anything else is left
    out silently, as ``kubectl`` does."""
    limits = limits or ManifestLimits()
    manifests: list[Manifest] = []
    for path in paths:
        if path == "-":
            if stdin_text is None:
                raise ManifestError("-: no standard input was given")
            manifests.extend(parse_documents(stdin_text, "-", limits))
        elif os.path.isdir(path):
            found, _ = files_under(path)
            for file_path in found:
                text = read_file(file_path, limits.max_file_size)
                manifests.extend(parse_documents(text, file_path, limits))
        else:
            manifests.extend(parse_documents(read_file(path, limits.max_file_size), path, limits))
    return manifests


def parse_documents(text: str, source: str, limits: ManifestLimits | None = None) -> list[Manifest]:
    """The objects in one YAML stream or JSON text; empty documents are ignored.  Bounded by
    ``limits``: documents, alias uses, and each object's size with aliases expanded."""
    limits = limits or ManifestLimits()
    manifests: list[Manifest] = []
    for index, document in _documents(text, source, limits):
        if index >= limits.max_documents:
            raise ManifestError(
                f"{source}: more than {limits.max_documents} documents (the limit per apply)"
            )
        if document is None:
            continue
        body = _plain(document, f"{source}#{index}", limits.max_object_size)
        manifests.extend(_manifests(body, source, index))
    return manifests


def files_under(directory: str) -> tuple[list[str], list[tuple[str, str]]]:
    """The manifest files below ``directory`` (``.yaml``, ``.yml``, ``.json``; symbolic links
    to directories are not followed), sorted, and those left out with the reason (a FIFO,
    a device, a socket, a dangling link: :func:`read_file` reads regular files only)."""
    found: list[str] = []
    skipped: list[tuple[str, str]] = []
    for root, dirs, files in os.walk(directory, followlinks=False):
        dirs.sort()
        for name in files:
            if not name.endswith(_EXTENSIONS):
                continue
            path = os.path.join(root, name)
            problem = _not_regular(path)
            if problem is None:
                found.append(path)
            else:
                skipped.append((path, problem))
    return sorted(found), sorted(skipped)


def _not_regular(path: str) -> str | None:
    try:
        mode = os.stat(path).st_mode
    except OSError as error:
        return error.strerror or str(error)
    if stat.S_ISREG(mode):
        return None
    return f"not a regular file ({_file_type(mode)})"


def _file_type(mode: int) -> str:
    for check, name in (
        (stat.S_ISFIFO, "a FIFO"),
        (stat.S_ISCHR, "a character device"),
        (stat.S_ISBLK, "a block device"),
        (stat.S_ISSOCK, "a socket"),
        (stat.S_ISDIR, "a directory"),
    ):
        if check(mode):
            return name
    return "not a regular file"


def read_file(path: str, max_bytes: int) -> str:
    """The text of the regular file ``path`` (symbolic links followed), at most ``max_bytes``.
    A FIFO, a device or a socket is refused without reading from it (opening a FIFO does not
    wait for a writer), as is a larger file; ManifestError names the file and the rule."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC)
    except OSError as error:
        raise ManifestError(f"{path}: {error.strerror or error}") from None
    with os.fdopen(fd, "rb") as handle:
        mode = os.fstat(fd).st_mode
        if not stat.S_ISREG(mode):
            raise ManifestError(f"{path}: not a regular file ({_file_type(mode)}); not read")
        data = handle.read(max_bytes + 1)
    if len(data) > max_bytes:
        raise ManifestError(f"{path}: larger than {max_bytes} bytes (the limit); not read")
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError as error:
        raise ManifestError(f"{path}: not UTF-8 text ({error.reason})") from None


class _Loader(yaml.SafeLoader):
    """PyYAML's safe loader, made to read values as Kubernetes does, counting alias uses."""

    max_aliases = ManifestLimits().max_aliases
    aliases = 0

    def compose_node(self, parent: yaml.Node | None, index: int) -> yaml.Node | None:
        if self.check_event(yaml.AliasEvent):
            self.aliases += 1
            if self.aliases > self.max_aliases:
                event = self.peek_event()  # type: ignore[no-untyped-call]
                raise yaml.composer.ComposerError(
                    None,
                    None,
                    f"more than {self.max_aliases} alias uses (the limit)",
                    event.start_mark,
                )
        return super().compose_node(parent, index)

    def construct_mapping(self, node: yaml.MappingNode, deep: bool = False) -> dict[Any, Any]:
        seen: set[tuple[str, str]] = set()
        for key_node, _ in node.value:
            if isinstance(key_node, yaml.ScalarNode) and key_node.tag != _MERGE_TAG:
                identity = (key_node.tag, key_node.value)
                if identity in seen:
                    raise yaml.constructor.ConstructorError(
                        None, None, f"duplicate key {shown(key_node.value)}", key_node.start_mark
                    )
                seen.add(identity)
        return super().construct_mapping(node, deep=deep)


_MERGE_TAG = "tag:yaml.org,2002:merge"
_STRING_TAGS = {"tag:yaml.org,2002:timestamp", "tag:yaml.org,2002:value"}
_Loader.yaml_implicit_resolvers = {
    first: [(tag, regexp) for tag, regexp in resolvers if tag not in _STRING_TAGS]
    for first, resolvers in yaml.SafeLoader.yaml_implicit_resolvers.items()
}
_Loader.add_constructor("tag:yaml.org,2002:map", _Loader.construct_mapping)


def _documents(text: str, source: str, limits: ManifestLimits) -> Iterator[tuple[int, object]]:
    stripped = text.lstrip()
    if stripped.startswith(("{", "[")):
        try:
            yield 0, json.loads(text, object_pairs_hook=_json_object, parse_constant=_no_constant)
            return
        except RecursionError:
            raise ManifestError(f"{source}#0: document is nested too deeply") from None
        except ValueError:
            pass  # not JSON after all (maybe YAML flow style): read it as YAML
    index = 0
    loader: _Loader | None = None
    try:
        loader = _Loader(text)
        loader.max_aliases = limits.max_aliases
        while loader.check_data():  # type: ignore[no-untyped-call]
            document = loader.get_data()
            yield index, document
            index += 1
    except yaml.MarkedYAMLError as error:
        mark = error.problem_mark or error.context_mark
        at = f" at line {mark.line + 1}, column {mark.column + 1}" if mark is not None else ""
        problem = error.problem or error.context or "malformed"
        raise ManifestError(f"{source}#{index}: invalid YAML{at}: {problem}") from None
    except yaml.reader.ReaderError as error:
        raise ManifestError(
            f"{source}#{index}: invalid YAML: character #x{error.character:x} at offset "
            f"{error.position}: {error.reason}"
        ) from None
    except yaml.YAMLError as error:
        detail = " ".join(str(error).split())
        raise ManifestError(f"{source}#{index}: invalid YAML: {detail}") from None
    except RecursionError:
        raise ManifestError(f"{source}#{index}: document is nested too deeply") from None
    finally:
        if loader is not None:
            loader.dispose()


def _json_object(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    result: dict[str, Any] = {}
    for key, value in pairs:
        if key in result:
            raise ValueError(f"duplicate key {shown(key)}")
        result[key] = value
    return result


def _no_constant(name: str) -> object:
    raise ValueError(f"{name} is not a JSON number")


def _plain(value: object, where: str, max_size: int) -> Any:
    """A fresh copy of ``value`` made of JSON types only (aliases unshared, cycles refused),
    refused once its JSON form (about: one byte a value, plus its text) passes ``max_size``
    — how far YAML aliases may expand a document."""
    budget = [max_size]

    def spend(amount: int) -> None:
        budget[0] -= amount
        if budget[0] < 0:
            raise ManifestError(
                f"{where}: larger than {max_size} bytes once YAML aliases are expanded "
                "(the limit of one object)"
            )

    def copy(item: object, depth: int) -> Any:
        spend(1)
        if depth > _MAX_DEPTH:
            raise ManifestError(f"{where}: document is nested too deeply")
        if isinstance(item, dict):
            result = {}
            for key, sub in item.items():
                name = _key(key, where)
                spend(len(name) + 3)
                result[name] = copy(sub, depth + 1)
            return result
        if isinstance(item, list):
            return [copy(sub, depth + 1) for sub in item]
        if isinstance(item, float) and not math.isfinite(item):
            raise ManifestError(f"{where}: {item} is not a JSON number")
        if isinstance(item, str):
            spend(len(item) + 2)
            if lone_surrogate(item) is not None:
                raise ManifestError(
                    f"{where}: {item[:40]!r}: must be Unicode text (a lone UTF-16 surrogate)"
                )
            return item
        if item is None or isinstance(item, bool | int | float):
            return item
        raise ManifestError(f"{where}: a value of YAML type {type(item).__name__} is not JSON data")

    return copy(value, 0)


def _key(key: object, where: str) -> str:
    """A mapping key as Kubernetes' YAML-to-JSON conversion spells it."""
    if isinstance(key, str):
        return key
    if isinstance(key, bool):
        return "true" if key else "false"
    if isinstance(key, int | float) and not isinstance(key, bool):
        return str(key)
    if key is None:
        return "null"
    raise ManifestError(f"{where}: a mapping key of YAML type {type(key).__name__} is not allowed")


def _manifests(body: object, source: str, index: int, item: int | None = None) -> list[Manifest]:
    where = f"{source}#{index}" + (f" items[{item}]" if item is not None else "")
    if not isinstance(body, dict):
        raise ManifestError(f"{where}: a document must be a mapping, not {type_name(body)}")
    kind = body.get("kind")
    api_version = body.get("apiVersion")
    if not isinstance(kind, str) or not kind:
        raise ManifestError(f"{where}: kind: required, a non-empty string")
    if not isinstance(api_version, str) or not api_version:
        raise ManifestError(f"{where} {kind}: apiVersion: required, a non-empty string")
    if kind == "List" or (kind.endswith("List") and "items" in body):
        return _list_items(body, source, index, item, where, kind)
    metadata = body.get("metadata")
    if not isinstance(metadata, dict):
        raise ManifestError(f"{where} {kind}: metadata: required, a mapping")
    name = metadata.get("name")
    if not isinstance(name, str) or not name:
        raise ManifestError(f"{where} {kind}: metadata.name: required, a non-empty string")
    namespace = metadata.get("namespace")
    if namespace is not None and (not isinstance(namespace, str) or not namespace):
        raise ManifestError(
            f"{where} {kind} {name}: metadata.namespace: must be a non-empty string"
        )
    group = api_version.rpartition("/")[0]
    if (group, kind) in _CLUSTER_SCOPED:
        namespace = None
    elif group == APPMESH_GROUP and namespace is None:
        namespace = "default"
    return [Manifest(source, index, api_version, kind, name, namespace, body, item)]


def _list_items(
    body: dict[str, Any], source: str, index: int, item: int | None, where: str, kind: str
) -> list[Manifest]:
    if item is not None:
        raise ManifestError(f"{where} {kind}: a List inside a List is not supported")
    items = body.get("items")
    if items is None:
        return []
    if not isinstance(items, list):
        raise ManifestError(f"{where} {kind}: items: must be a list, not {type_name(items)}")
    found: list[Manifest] = []
    for position, element in enumerate(items):
        found.extend(_manifests(element, source, index, position))
    return found


def type_name(value: object) -> str:
    """The JSON type of ``value`` in words, for messages."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, int | float):
        return "a number"
    if isinstance(value, str):
        return "a string"
    if isinstance(value, list):
        return "a list"
    return "a mapping"


__all__ = [
    "APPMESH_GROUP",
    "Manifest",
    "ManifestLimits",
    "files_under",
    "load_paths",
    "parse_documents",
    "read_file",
    "type_name",
]
