"""Image references: ``[domain[:port]/]path[:tag][@digest]``, normalized as docker and containerd do.

A bare name is a Docker Hub name: ``busybox`` is ``docker.io/library/busybox:latest`` and
``user/app`` is ``docker.io/user/app:latest``. The first path element is a registry domain only
when it looks like one (it holds a ``.`` or a ``:``, is ``localhost``, or has upper-case letters);
``index.docker.io`` is another spelling of ``docker.io``. A reference with neither tag nor digest
gets the ``latest`` tag; one with both keeps both, and the digest is what the registry is asked for.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from pycontainerd.errdefs import InvalidArgument

DEFAULT_DOMAIN = "docker.io"
LEGACY_DEFAULT_DOMAIN = "index.docker.io"
OFFICIAL_PREFIX = "library/"
DEFAULT_TAG = "latest"
MAX_PATH_LENGTH = 255

# The grammar of distribution/reference, in our own spelling.
_COMPONENT = r"[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*"
_PATH = rf"{_COMPONENT}(?:/{_COMPONENT})*"
_DOMAIN_PART = r"(?:[a-zA-Z0-9]|[a-zA-Z0-9][a-zA-Z0-9-]*[a-zA-Z0-9])"
_HOST = rf"(?:{_DOMAIN_PART}(?:\.{_DOMAIN_PART})*|\[[a-fA-F0-9:]+\])"
_DOMAIN = rf"{_HOST}(?::[0-9]+)?"
_TAG = r"[\w][\w.-]{0,127}"
_DIGEST = r"[A-Za-z][A-Za-z0-9]*(?:[-_+.][A-Za-z][A-Za-z0-9]*)*:[0-9a-fA-F]{32,}"
_REFERENCE = re.compile(
    rf"(?P<name>(?:(?P<domain>{_DOMAIN})/)?(?P<path>{_PATH}))(?::(?P<tag>{_TAG}))?(?:@(?P<digest>{_DIGEST}))?"
)
_IDENTIFIER = re.compile(r"[a-f0-9]{64}")
_DOMAIN_RE = re.compile(_DOMAIN)
_TAG_RE = re.compile(_TAG)
_DIGEST_LENGTHS = {"sha256": 64, "sha384": 96, "sha512": 128}


@dataclass(frozen=True, slots=True)
class Reference:
    """A normalized image reference.

    Attributes:
        domain: registry host, with its port if any (``docker.io``, ``127.0.0.1:5000``).
        path: repository path inside the registry (``library/busybox``).
        tag: the tag, "" when the reference names a digest only.
        digest: ``<algorithm>:<hex>``, or "".
    """

    domain: str
    path: str
    tag: str = ""
    digest: str = ""

    @property
    def name(self) -> str:
        """``domain/path``: the repository, without tag or digest."""
        return f"{self.domain}/{self.path}"

    @property
    def object(self) -> str:
        """What follows the name: ``tag``, ``@digest`` or ``tag@digest`` (containerd's ``Object``)."""
        if self.digest:
            return f"{self.tag}@{self.digest}"
        return self.tag

    @property
    def manifest_key(self) -> str:
        """What to put after ``/manifests/`` to resolve this reference: the digest when known."""
        return self.digest or self.tag

    def with_tag(self, tag: str) -> Reference:
        """The same repository with another tag (and no digest)."""
        if not _TAG_RE.fullmatch(tag):
            raise InvalidArgument(f"invalid tag {tag!r}")
        return Reference(self.domain, self.path, tag, "")

    def with_digest(self, digest: str) -> Reference:
        """The same repository and tag, pinned to ``digest``."""
        _check_digest(digest)
        return Reference(self.domain, self.path, self.tag, digest)

    def __str__(self) -> str:
        out = self.name
        if self.tag:
            out += f":{self.tag}"
        if self.digest:
            out += f"@{self.digest}"
        return out


def _check_digest(digest: str) -> None:
    alg, _, hexpart = digest.partition(":")
    want = _DIGEST_LENGTHS.get(alg)
    if want is None:
        raise InvalidArgument(f"invalid reference: unsupported digest algorithm in {digest!r}")
    if len(hexpart) != want or not re.fullmatch(r"[a-f0-9]+", hexpart):
        raise InvalidArgument(f"invalid reference: invalid checksum digest {digest!r}")


def _split_domain(name: str) -> tuple[str, str]:
    """Split a name into (domain, remainder) the way the docker CLI does."""
    first, sep, rest = name.partition("/")
    if not sep:
        return DEFAULT_DOMAIN, OFFICIAL_PREFIX + name
    if first == "localhost" or any(c in first for c in ".:") or first.lower() != first:
        domain, remainder = first, rest
    else:
        domain, remainder = DEFAULT_DOMAIN, name
    if domain == LEGACY_DEFAULT_DOMAIN:
        domain = DEFAULT_DOMAIN
    if domain == DEFAULT_DOMAIN and "/" not in remainder:
        remainder = OFFICIAL_PREFIX + remainder
    return domain, remainder


def parse_reference(value: str, *, default_tag: str = DEFAULT_TAG) -> Reference:
    """Parse and normalize an image reference.

    Args:
        value: ``busybox``, ``ghcr.io/org/app:v1``, ``127.0.0.1:5000/repo@sha256:...``,
            ``repo:tag@sha256:...``.
        default_tag: tag given to a reference without tag or digest ("" to leave none).

    Raises:
        InvalidArgument: an empty or malformed reference, an upper-case repository path, a bare
            64-hex identifier, a path longer than 255 characters, an unknown digest algorithm.
    """
    if not value:
        raise InvalidArgument("invalid reference format: repository name must have at least one component")
    if _IDENTIFIER.fullmatch(value):
        raise InvalidArgument(f"invalid repository name ({value}), cannot specify 64-byte hexadecimal strings")
    domain, remainder = _split_domain(value)
    # The repository part must be lower case; check it before the full grammar to say so.
    repo = remainder.split("@", 1)[0].split(":", 1)[0]
    if repo.lower() != repo:
        raise InvalidArgument(f"invalid reference format: repository name ({repo}) must be lowercase")
    m = _REFERENCE.fullmatch(f"{domain}/{remainder}")
    if m is None or m.group("domain") is None:
        raise InvalidArgument(f"invalid reference format: {value!r}")
    path = m.group("path")
    if len(path) > MAX_PATH_LENGTH:
        raise InvalidArgument(f"invalid reference: repository name must not be more than {MAX_PATH_LENGTH} characters")
    tag = m.group("tag") or ""
    digest = m.group("digest") or ""
    if digest:
        _check_digest(digest)
    elif not tag:
        tag = default_tag
    return Reference(m.group("domain"), path, tag, digest)


def is_valid_domain(host: str) -> bool:
    """Whether ``host`` (with an optional port) is a registry domain a reference could hold."""
    return _DOMAIN_RE.fullmatch(host) is not None


def familiar_name(ref: Reference) -> str:
    """The short form the docker CLI prints: ``busybox:latest`` for ``docker.io/library/busybox:latest``."""
    out = str(ref)
    if ref.domain == DEFAULT_DOMAIN:
        out = out[len(DEFAULT_DOMAIN) + 1 :]
        if out.startswith(OFFICIAL_PREFIX) and "/" not in ref.path[len(OFFICIAL_PREFIX) :]:
            out = out[len(OFFICIAL_PREFIX) :]
    return out
