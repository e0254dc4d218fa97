"""Build, merge, read and clear clipcrop's XMP crop packet (SPEC 6).

Existing XMP (a host's sidecar, a camera's embedded packet) is untrusted input: it is parsed with
defusedxml, DTDs are refused outright (so no entity can be expanded and nothing external is
fetched), and a packet that does not parse is never overwritten.

What clipcrop owns in a packet, and therefore replaces on write and removes on clear:

- the Camera Raw crop properties in :data:`CRS_OWNED`,
- ``tiff:ImageWidth``, ``tiff:ImageLength`` and ``tiff:Orientation``,
- every property in the clipcrop namespace :data:`NS_CLIPCROP`.

Everything else in the packet (other namespaces, other ``crs:`` develop settings, keywords,
ratings, darktable history, ``xmpNote:HasExtendedXMP``) is kept with its prefix, text and order.
Owned values that were there before the first write (say a Lightroom crop) are remembered in
``clipcrop:Prior`` so that clear puts them back: clear removes exactly what clipcrop wrote.

Two owned values describe the photo rather than the crop, and a host's value for them is never
replaced (:data:`HOST_KEPT`): ``crs:AlreadyApplied="True"`` says the settings are baked into the
pixels, and a ``tiff:Orientation`` clipcrop did not write is the host's rotation (Lightroom keeps
a user's rotation there, and a file without EXIF may have no other).
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from xml.etree import ElementTree as ET

import defusedxml.ElementTree as DET
from defusedxml import DefusedXmlException

from ..errors import MetadataError

NS_X = "adobe:ns:meta/"
NS_RDF = "http://www.w3.org/1999/02/22-rdf-syntax-ns#"
NS_CRS = "http://ns.adobe.com/camera-raw-settings/1.0/"
NS_TIFF = "http://ns.adobe.com/tiff/1.0/"
NS_CLIPCROP = "https://clipcrop.dev/ns/1.0/"
NS_XML = "http://www.w3.org/XML/1998/namespace"

# Preferred prefixes when a packet does not already name these namespaces.
DEFAULT_PREFIXES = {
    NS_X: "x",
    NS_RDF: "rdf",
    NS_CRS: "crs",
    NS_TIFF: "tiff",
    NS_CLIPCROP: "clipcrop",
    "http://ns.adobe.com/xap/1.0/": "xmp",
    "http://purl.org/dc/elements/1.1/": "dc",
    "http://ns.adobe.com/xmp/note/": "xmpNote",
}

CRS_OWNED = ("HasCrop", "CropLeft", "CropTop", "CropRight", "CropBottom", "CropAngle",
             "CropConstrainToWarp", "AlreadyApplied")
TIFF_OWNED = ("ImageWidth", "ImageLength", "Orientation")
OWNED = tuple(f"{{{NS_CRS}}}{n}" for n in CRS_OWNED) + tuple(f"{{{NS_TIFF}}}{n}" for n in TIFF_OWNED)
HOST_KEPT = ("crs:AlreadyApplied", "tiff:Orientation")
# clipcrop's own property names that older versions used: read as the new ones. ImageWidth
# clashed with tiff:ImageWidth (the stored size) for readers that ignore namespaces.
RENAMED = {"ImageWidth": "UprightWidth", "ImageHeight": "UprightHeight"}

MAX_PACKET_BYTES = 16 * 1024 * 1024  # a sidecar larger than this is not an XMP packet we should parse
XPACKET_ID = "W5M0MpCehiHzreSzNTczkc9d"
TOOLKIT = "clipcrop XMP writer"

_RDF_DESC = f"{{{NS_RDF}}}Description"
_RDF_ABOUT = f"{{{NS_RDF}}}about"
_RDF_LI = f"{{{NS_RDF}}}li"
_RDF_SEQ = f"{{{NS_RDF}}}Seq"
_PARSE_TYPE = f"{{{NS_RDF}}}parseType"
_PRIOR = f"{{{NS_CLIPCROP}}}Prior"


def _q(ns: str, local: str) -> str:
    return f"{{{ns}}}{local}"


@dataclass
class CropPacket:
    """The values clipcrop writes for one photo, already formatted as XMP strings.

    ``crs`` and ``tiff`` map local property names to values; ``simple`` holds the clipcrop
    namespace's simple properties; ``explanation`` and ``alternatives`` become ``rdf:Seq``s of
    structures (``clipcrop:Explanation``, ``clipcrop:Alternatives``).
    """

    crs: dict[str, str]
    tiff: dict[str, str]
    simple: dict[str, str] = field(default_factory=dict)
    explanation: list[dict[str, str]] = field(default_factory=list)
    alternatives: list[dict[str, str]] = field(default_factory=list)


_REFUSED = {
    "DTDForbidden": "a DTD",
    "EntitiesForbidden": "entity declarations",
    "ExternalReferenceForbidden": "an external reference",
    "NotSupportedError": "an unsupported XML feature",
}


class _NsTreeBuilder(ET.TreeBuilder):
    """A TreeBuilder that keeps comments and remembers the prefix each namespace was declared with."""

    def __init__(self) -> None:
        super().__init__(insert_comments=True, insert_pis=True)
        self.prefixes: list[tuple[str, str]] = []

    def start_ns(self, prefix: str, uri: str) -> None:
        self.prefixes.append((prefix, uri))


@dataclass
class XmpDoc:
    """A parsed (or new) XMP packet: the element tree plus the prefixes its author chose."""

    root: ET.Element
    prefixes: dict[str, str]  # uri -> prefix

    @property
    def rdf(self) -> ET.Element:
        if self.root.tag == f"{{{NS_RDF}}}RDF":
            return self.root
        rdf = self.root.find(f"{{{NS_RDF}}}RDF")
        if rdf is None:
            raise MetadataError("XMP packet has no rdf:RDF element")
        return rdf


def new_doc() -> XmpDoc:
    """An empty ``x:xmpmeta`` / ``rdf:RDF`` packet."""
    root = ET.Element(_q(NS_X, "xmpmeta"), {_q(NS_X, "xmptk"): TOOLKIT})
    root.text = "\n "
    rdf = ET.SubElement(root, f"{{{NS_RDF}}}RDF")
    rdf.tail = "\n"
    rdf.text = "\n"
    return XmpDoc(root, {})


def parse_packet(data: bytes | str, what: str = "XMP") -> XmpDoc:
    """Parse an existing XMP packet as untrusted input.

    Raises :class:`MetadataError` for a DTD, an entity declaration, an external reference,
    malformed XML, or a document that is not XMP; nothing is expanded or fetched.
    """
    if isinstance(data, str):
        data = data.encode("utf-8")
    if len(data) > MAX_PACKET_BYTES:
        raise MetadataError(f"{what} is {len(data)} bytes, larger than any XMP packet should be")
    data = data.lstrip(b"\x00 \t\r\n")  # padding some writers leave in front of the packet
    builder = _NsTreeBuilder()
    parser = DET.DefusedXMLParser(target=builder, forbid_dtd=True, forbid_entities=True, forbid_external=True)
    try:
        parser.feed(data)
        root = parser.close()
    except DefusedXmlException as exc:
        kind = _REFUSED.get(type(exc).__name__, "a construct XMP never needs")
        raise MetadataError(f"{what} refused: it contains {kind} (untrusted XML is not expanded)") from None
    except ET.ParseError as exc:
        raise MetadataError(f"{what} is not well-formed XML ({exc})") from None
    except (ValueError, LookupError, RecursionError) as exc:  # bad encoding declarations and the like
        raise MetadataError(f"{what} cannot be parsed ({exc})") from None
    if not isinstance(root.tag, str) or root.tag not in (_q(NS_X, "xmpmeta"), _q(NS_X, "xapmeta"), f"{{{NS_RDF}}}RDF"):
        raise MetadataError(f"{what} is not an XMP packet (root element {root.tag!r})")
    prefixes: dict[str, str] = {}
    for prefix, uri in builder.prefixes:
        prefixes.setdefault(uri, prefix)
    doc = XmpDoc(root, prefixes)
    doc.rdf  # noqa: B018 - validates that the packet has an rdf:RDF
    return doc


# ---------------------------------------------------------------- serialization

def _escape_text(s: str) -> str:
    return s.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def _escape_attr(s: str) -> str:
    return (_escape_text(s).replace('"', "&quot;").replace("\n", "&#10;").replace("\r", "&#13;")
            .replace("\t", "&#9;"))


def _collect_uris(elem: ET.Element, out: dict[str, None]) -> None:
    for node in elem.iter():
        if isinstance(node.tag, str) and node.tag.startswith("{"):
            out.setdefault(node.tag[1:].split("}", 1)[0], None)
        for name in node.attrib:
            if name.startswith("{"):
                out.setdefault(name[1:].split("}", 1)[0], None)


def _prefix_map(doc: XmpDoc) -> dict[str, str]:
    """uri -> a unique prefix for every namespace the tree uses, preferring the author's choice."""
    used: dict[str, None] = {}
    _collect_uris(doc.root, used)
    out: dict[str, str] = {}
    taken: set[str] = {"xml", "xmlns"}
    for uri in used:
        if uri == NS_XML:
            out[uri] = "xml"
            continue
        base = doc.prefixes.get(uri) or DEFAULT_PREFIXES.get(uri) or "ns"
        prefix, n = base, 1
        while prefix in taken:
            prefix, n = f"{base}{n}", n + 1
        taken.add(prefix)
        out[uri] = prefix
    return out


def _qname(name: str, pmap: dict[str, str]) -> str:
    if name.startswith("{"):
        uri, local = name[1:].split("}", 1)
        return f"{pmap[uri]}:{local}"
    return name


def _write(elem: ET.Element, pmap: dict[str, str], out: list[str], root: bool = False) -> None:
    tag = elem.tag
    if tag is ET.Comment:
        out.append(f"<!--{elem.text or ''}-->")
    elif tag is ET.ProcessingInstruction:
        out.append(f"<?{elem.text or ''}?>")
    else:
        name = _qname(tag, pmap)
        out.append(f"<{name}")
        if root:
            for uri, prefix in pmap.items():
                if uri != NS_XML:
                    out.append(f' xmlns:{prefix}="{_escape_attr(uri)}"')
        for k, v in elem.attrib.items():
            out.append(f' {_qname(k, pmap)}="{_escape_attr(v)}"')
        if len(elem) == 0 and not elem.text:
            out.append("/>")
        else:
            out.append(">")
            if elem.text:
                out.append(_escape_text(elem.text))
            for child in elem:
                _write(child, pmap, out)
            out.append(f"</{name}>")
    if elem.tail and not root:
        out.append(_escape_text(elem.tail))


def serialize(doc: XmpDoc, padding: int = 0) -> bytes:
    """The packet as UTF-8 bytes inside ``<?xpacket?>`` markers, with ``padding`` spaces for in-place edits."""
    pmap = _prefix_map(doc)
    out: list[str] = [f'<?xpacket begin="\ufeff" id="{XPACKET_ID}"?>\n']
    _write(doc.root, pmap, out, root=True)
    out.append("\n")
    if padding > 0:
        line = " " * 99 + "\n"
        out.append(line * (padding // 100) + " " * (padding % 100))
    out.append('<?xpacket end="w"?>')
    return "".join(out).encode("utf-8")


# ---------------------------------------------------------------- our properties

def _descriptions(doc: XmpDoc) -> list[ET.Element]:
    return [d for d in doc.rdf if d.tag == _RDF_DESC]


def _simple_value(elem: ET.Element) -> str:
    """The text of a property element; for a structured value, its text content flattened."""
    return "".join(elem.itertext()).strip() if len(elem) else (elem.text or "").strip()


_SHORT = {_q(NS_CRS, n): f"crs:{n}" for n in CRS_OWNED} | {_q(NS_TIFF, n): f"tiff:{n}" for n in TIFF_OWNED}
_LONG = {v: k for k, v in _SHORT.items()}


def _owned_values(doc: XmpDoc) -> dict[str, str]:
    """Owned properties present in the packet, keyed by Clark name (``{uri}local``)."""
    values: dict[str, str] = {}
    for desc in _descriptions(doc):
        for name, value in desc.attrib.items():
            if name in OWNED:
                values.setdefault(name, value)
        for child in desc:
            if child.tag in OWNED:
                values.setdefault(child.tag, _simple_value(child))
    return values


def _read_prior(doc: XmpDoc) -> dict | None:
    for desc in _descriptions(doc):
        raw = desc.get(_PRIOR)
        if raw is None:
            child = desc.find(_PRIOR)
            raw = None if child is None else (child.text or "")
        if raw is not None:
            try:
                prior = json.loads(raw)
            except ValueError:
                raise MetadataError("clipcrop:Prior in the existing XMP is damaged; not touching it") from None
            if not isinstance(prior, dict):
                raise MetadataError("clipcrop:Prior in the existing XMP is damaged; not touching it")
            return prior
    return None


def _strip(doc: XmpDoc) -> None:
    """Remove owned properties and every clipcrop property; drop Descriptions left empty by it."""
    rdf = doc.rdf

    def ours(name: object) -> bool:
        return isinstance(name, str) and (name in OWNED or name.startswith(f"{{{NS_CLIPCROP}}}"))

    for desc in _descriptions(doc):
        touched = False
        for name in [n for n in desc.attrib if ours(n)]:
            del desc.attrib[name]
            touched = True
        for child in [c for c in desc if ours(c.tag)]:
            _remove_child(desc, child)
            touched = True
        only_about = set(desc.attrib) <= {_RDF_ABOUT}
        if touched and only_about and len(desc) == 0:
            _remove_child(rdf, desc)


def _remove_child(parent: ET.Element, child: ET.Element) -> None:
    """Remove ``child``; when it was the last child, its tail (the closing tag's indent) moves to the one before."""
    children = list(parent)
    idx = children.index(child)
    if idx == len(children) - 1 and idx > 0:
        children[idx - 1].tail = child.tail
    parent.remove(child)


def _seq(parent: ET.Element, name: str, items: list[dict[str, str]], indent: str) -> None:
    prop = ET.SubElement(parent, _q(NS_CLIPCROP, name))
    prop.text = f"\n{indent}  "
    prop.tail = f"\n{indent}"
    seq = ET.SubElement(prop, _RDF_SEQ)
    seq.text = f"\n{indent}    "
    seq.tail = f"\n{indent}"
    for i, item in enumerate(items):
        li = ET.SubElement(seq, _RDF_LI, {_PARSE_TYPE: "Resource"})
        li.text = f"\n{indent}     "
        li.tail = f"\n{indent}    " if i < len(items) - 1 else f"\n{indent}  "
        for j, (k, v) in enumerate(item.items()):
            field_el = ET.SubElement(li, _q(NS_CLIPCROP, k))
            field_el.text = v
            field_el.tail = f"\n{indent}     " if j < len(item) - 1 else f"\n{indent}    "


def host_values(doc: XmpDoc) -> dict[str, str]:
    """The :data:`HOST_KEPT` values in the packet that clipcrop did not write (``"tiff:Orientation"``
    -> ``"6"``): a write keeps them as they are, and a clear leaves them in place."""
    current = {_SHORT[k]: v for k, v in _owned_values(doc).items()}
    prior = _read_prior(doc) or {}
    wrote, before = prior.get("wrote") or {}, prior.get("before") or {}
    # Ours only when clipcrop wrote it and it was not the host's value to begin with (an earlier
    # write that kept the host's value recorded it in both).
    return {n: current[n] for n in HOST_KEPT
            if n in current and (wrote.get(n) != current[n] or before.get(n) == current[n])}


def apply_crop(doc: XmpDoc, packet: CropPacket, *, created: bool) -> XmpDoc:
    """Merge ``packet`` into ``doc``: replace what clipcrop owns, keep everything else.

    ``created`` says whether the packet (sidecar file, embedded segment or chunk) did not exist
    before clipcrop's first write, so that clear can delete it again.
    """
    current = {_SHORT[k]: v for k, v in _owned_values(doc).items()}
    kept = host_values(doc)
    prior = _read_prior(doc)
    if prior is None:
        prior = {"created": bool(created), "before": dict(current)}
    else:
        # A value that differs from what we wrote last time was set by someone else since:
        # that is now the value clear must restore.
        before = dict(prior.get("before") or {})
        wrote = prior.get("wrote") or {}
        for name in set(current) | set(wrote):
            if current.get(name) != wrote.get(name):
                before[name] = current.get(name)
        prior = {"created": bool(prior.get("created")), "before": {k: v for k, v in before.items() if v is not None}}
    _strip(doc)

    rdf = doc.rdf
    descs = _descriptions(doc)
    about = descs[0].get(_RDF_ABOUT, "") if descs else ""
    attrs = {_RDF_ABOUT: about}
    wrote: dict[str, str] = {}
    crs = dict(packet.crs)
    tiff = dict(packet.tiff)
    for name, value in kept.items():
        ns, local = name.split(":")
        (crs if ns == "crs" else tiff)[local] = value
    for k, v in crs.items():
        attrs[_q(NS_CRS, k)] = wrote[f"crs:{k}"] = v
    for k, v in tiff.items():
        attrs[_q(NS_TIFF, k)] = wrote[f"tiff:{k}"] = v
    for k, v in packet.simple.items():
        attrs[_q(NS_CLIPCROP, k)] = v
    prior["wrote"] = wrote
    attrs[_PRIOR] = json.dumps(prior, sort_keys=True, separators=(",", ":"))

    indent = "   "
    desc = ET.Element(_RDF_DESC, attrs)
    desc.text = f"\n{indent}"
    if packet.explanation:
        _seq(desc, "Explanation", packet.explanation, indent)
    if packet.alternatives:
        _seq(desc, "Alternatives", packet.alternatives, indent)
    if len(desc):
        desc[-1].tail = "\n  "
    else:
        desc.text = None
    # Keep the whitespace layout: the new Description goes last, after the existing ones.
    if len(rdf):
        desc.tail = rdf[-1].tail
        rdf[-1].tail = "\n  "
    else:
        rdf.text = "\n  "
        desc.tail = "\n "
    rdf.append(desc)
    return doc


def has_clipcrop(doc: XmpDoc) -> bool:
    """Whether the packet carries anything clipcrop wrote."""
    for desc in _descriptions(doc):
        if any(n.startswith(f"{{{NS_CLIPCROP}}}") for n in desc.attrib):
            return True
        if any(isinstance(c.tag, str) and c.tag.startswith(f"{{{NS_CLIPCROP}}}") for c in desc):
            return True
    return False


def clear_crop(doc: XmpDoc) -> tuple[bool, bool]:
    """Remove what clipcrop wrote and restore the owned values it replaced.

    Returns ``(changed, created)``: whether anything was removed, and whether clipcrop had
    created the packet itself (the caller then deletes the sidecar, segment or chunk, provided
    nothing else was added to it since).
    """
    if not has_clipcrop(doc):
        return False, False
    prior = _read_prior(doc) or {}
    current = {_SHORT[k]: v for k, v in _owned_values(doc).items()}
    wrote = prior.get("wrote") or {}
    before = prior.get("before") or {}
    # Owned values changed by someone else after our write stay as they are.
    keep = {n: v for n, v in current.items() if n in wrote and wrote[n] != v}
    _strip(doc)
    restore = {**{n: v for n, v in before.items() if isinstance(v, str)}, **keep}
    if restore:
        descs = _descriptions(doc)
        if descs:
            target = descs[0]
        else:
            target = ET.SubElement(doc.rdf, _RDF_DESC, {_RDF_ABOUT: ""})
            target.tail = "\n "
        for name, value in restore.items():
            if name in _LONG:  # ignore anything else a damaged Prior might name
                target.set(_LONG[name], value)
    return True, bool(prior.get("created")) and not restore


def is_empty(doc: XmpDoc) -> bool:
    """Whether the packet holds no property at all (only empty Descriptions or none)."""
    for desc in _descriptions(doc):
        if set(desc.attrib) - {_RDF_ABOUT} or any(isinstance(c.tag, str) for c in desc):
            return False
    return not any(isinstance(c.tag, str) and c.tag != _RDF_DESC for c in doc.rdf)


# ---------------------------------------------------------------- reading back

def _struct_items(desc: ET.Element, name: str) -> list[dict[str, str]]:
    prop = desc.find(_q(NS_CLIPCROP, name))
    if prop is None:
        return []
    items = []
    for li in prop.iter(_RDF_LI):
        entry: dict[str, str] = {}
        for k, v in li.attrib.items():
            if k.startswith(f"{{{NS_CLIPCROP}}}"):
                entry[k.split("}", 1)[1]] = v
        for child in li.iter():
            if child is not li and isinstance(child.tag, str) and child.tag.startswith(f"{{{NS_CLIPCROP}}}"):
                entry[child.tag.split("}", 1)[1]] = (child.text or "").strip()
        items.append(entry)
    return items


def read_crop(doc: XmpDoc) -> dict | None:
    """The crop in a packet as plain values, or None when it has neither a crs crop nor ours.

    ``crs`` holds the stored-frame fractions; ``ours`` says whether clipcrop wrote them.
    """
    owned = _owned_values(doc)
    simple: dict[str, str] = {}
    explanation: list[dict[str, str]] = []
    alternatives: list[dict[str, str]] = []
    for desc in _descriptions(doc):
        for k, v in desc.attrib.items():
            if k.startswith(f"{{{NS_CLIPCROP}}}"):
                simple[k.split("}", 1)[1]] = v
        for child in desc:
            if isinstance(child.tag, str) and child.tag.startswith(f"{{{NS_CLIPCROP}}}") and len(child) == 0:
                simple[child.tag.split("}", 1)[1]] = (child.text or "").strip()
        explanation = explanation or _struct_items(desc, "Explanation")
        alternatives = alternatives or _struct_items(desc, "Alternatives")
    has_crop = owned.get(_q(NS_CRS, "HasCrop"), "").lower() == "true"
    if not has_crop and not simple:
        return None
    crs: dict[str, float] = {}
    for k in ("CropLeft", "CropTop", "CropRight", "CropBottom", "CropAngle"):
        raw = owned.get(_q(NS_CRS, k))
        if raw is not None:
            try:
                crs[k] = float(raw)
            except ValueError:
                raise MetadataError(f"crs:{k} is not a number ({raw!r})") from None
    tiff = {k: owned[_q(NS_TIFF, k)] for k in TIFF_OWNED if _q(NS_TIFF, k) in owned}
    simple.pop("Prior", None)
    for old, new in RENAMED.items():
        if old in simple:
            simple.setdefault(new, simple.pop(old))
    return {
        "ours": bool(simple),
        "has_crop": has_crop,
        "crs": crs,
        "tiff": tiff,
        "clipcrop": simple,
        "explanation": explanation,
        "alternatives": alternatives,
    }


def our_packet(doc: XmpDoc) -> CropPacket | None:
    """What clipcrop wrote into ``doc``, as a packet that can be written again elsewhere (a photo
    that moved takes its crop along), or None when the packet holds nothing of ours."""
    if not has_clipcrop(doc):
        return None
    wrote = (_read_prior(doc) or {}).get("wrote") or {_SHORT[k]: v for k, v in _owned_values(doc).items()}
    data = read_crop(doc) or {}
    simple = {k: v for k, v in (data.get("clipcrop") or {}).items() if k not in ("Explanation", "Alternatives")}
    return CropPacket(
        crs={n.split(":", 1)[1]: v for n, v in wrote.items() if n.startswith("crs:")},
        tiff={n.split(":", 1)[1]: v for n, v in wrote.items() if n.startswith("tiff:")},
        simple=simple,
        explanation=list(data.get("explanation") or []),
        alternatives=list(data.get("alternatives") or []),
    )
