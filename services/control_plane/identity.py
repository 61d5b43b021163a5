"""The caller's mTLS identity from the ``x-forwarded-client-cert`` header an Envoy sidecar sets.

Istio's sidecar terminates the caller's mTLS connection and passes the
verified client certificate's details on in ``x-forwarded-client-cert``
(XFCC): elements separated by commas, each a list of ``Key=Value`` pairs
separated by semicolons, values double-quoted when they contain ``,;=``.
When the sidecar appends to a header the caller already sent
(``APPEND_FORWARD``), only the last element is its own; the ones before it
are whatever the caller wrote. So the identity is the ``URI`` of the last
element, and only a ``spiffe://`` URI counts.

The header proves nothing where no sidecar stands between the caller and
the service (a local ``brokermesh up``): anyone can send it. The control
plane reads it only when its settings say a sidecar sets it.
"""

from __future__ import annotations

#: gRPC metadata key (lower-case, as gRPC delivers it) of the header.
XFCC_HEADER = "x-forwarded-client-cert"
_SPIFFE = "spiffe://"


def spiffe_id(xfcc: str) -> str:
    """The SPIFFE URI of the last element of ``xfcc``; empty when it names none."""
    elements = _split(xfcc, ",")
    if not elements:
        return ""
    for pair in _split(elements[-1], ";"):
        key, _, value = pair.partition("=")
        uri = _unquote(value.strip())
        if key.strip().lower() == "uri" and uri.startswith(_SPIFFE):
            return uri
    return ""


def _split(text: str, separator: str) -> list[str]:
    """``text`` split at ``separator`` outside double quotes (``\\"`` escapes a quote)."""
    parts: list[str] = []
    current: list[str] = []
    quoted = escaped = False
    for char in text:
        if escaped:
            escaped = False
        elif char == "\\" and quoted:
            escaped = True
        elif char == '"':
            quoted = not quoted
        elif char == separator and not quoted:
            parts.append("".join(current))
            current = []
            continue
        current.append(char)
    parts.append("".join(current))
    return [part for part in parts if part.strip()]


def _unquote(value: str) -> str:
    if len(value) >= 2 and value[0] == value[-1] == '"':
        return value[1:-1].replace('\\"', '"')
    return value
