"""The claims catalog (`claims.toml`, shipped inside the package): what each claim ID asserts.

The TOML is the data; this module only reads it. Keep it in step with shared/CLAIMS.md.
"""

from __future__ import annotations

import sys
from dataclasses import asdict, dataclass
from functools import lru_cache
from importlib import resources

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover - exercised on 3.10 only
    import tomli as tomllib


@dataclass(frozen=True)
class Claim:
    id: str
    family: str
    claim: str
    source: str
    reported: str = ""
    test: str = ""
    beyond_sources: bool = False

    def to_dict(self) -> dict:
        return asdict(self)


@dataclass(frozen=True)
class Catalog:
    claims: dict[str, Claim]        # in CLAIMS.md order
    families: dict[str, str]        # prefix -> title
    sources: dict[str, str]         # "000" -> what the document is

    def to_dict(self) -> dict:
        return {"claims": [c.to_dict() for c in self.claims.values()],
                "families": dict(self.families), "sources": dict(self.sources)}

    @classmethod
    def from_dict(cls, d: dict) -> "Catalog":
        claims = [Claim(**c) for c in d["claims"]]
        return cls({c.id: c for c in claims}, dict(d["families"]), dict(d["sources"]))


@lru_cache(maxsize=1)
def load_catalog() -> Catalog:
    text = resources.files(__package__).joinpath("claims.toml").read_text(encoding="utf-8")
    data = tomllib.loads(text)
    return Catalog.from_dict({"claims": data["claim"], "families": data["families"], "sources": data["sources"]})
