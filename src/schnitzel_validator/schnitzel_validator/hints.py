"""Did-you-mean hints shared by the validator's checks."""
from __future__ import annotations

import difflib
from typing import Iterable, List


def _close(word: str, options: Iterable[str], n: int = 3) -> List[str]:
    return difflib.get_close_matches(word, list(options), n=n, cutoff=0.6)


def _did_you_mean(word: str, options: Iterable[str]) -> str:
    close = _close(word, options)
    return f"did you mean {' or '.join(repr(c) for c in close)}? " if close else ""
