"""MovieLens folders (ml-1m, ml-100k) to the two files training reads: ratings and items.

The ratings need no conversion (`--format movielens` reads `ratings.dat` and `u.data`
as they are), so `convert_movielens` copies that file; the movie list becomes an
item-features file, one JSON object a line in the shape of the items topic
(`{"item_id", "features": {"categories", "text"}}`, docs/CONTRACTS.md, "Item"), so
the same file feeds `streamrec train --item-features` and `streamrec items publish`.
Categories are the genres plus the release decade (`decade:1990s`): films of one
decade share actors, style and audience, and the decade is the one other fact both
files give. The text is the title without its year, with a trailing article moved to
the front ("American President, The" -> "The American President") so titles of one
franchise share their leading words.

GroupLens distributes the files latin-1 encoded; copies passed around are often
re-encoded to UTF-8, so each file is decoded as UTF-8 when it is valid and latin-1
otherwise. The data's licence forbids redistribution: it is read from a folder the
operator downloaded (docs/QUALITY.md, "Item cold start"), never shipped.
"""

from __future__ import annotations

import json
import logging
import re
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from streamrec.encoder.errors import DataFormatError

logger = logging.getLogger(__name__)

RATINGS_FILES = ("ratings.dat", "u.data")  # ml-1m (`::`), ml-100k (tab)
ITEMS_FILE = "items.jsonl"
_YEAR = re.compile(r"^(?P<title>.*?)\s*\((?P<year>\d{4})\)\s*$")
_ARTICLE = re.compile(r"^(?P<rest>.+), (?P<article>The|A|An)$")
ML100K_GENRES = (  # u.genre, in the order of u.item's 19 flag columns
    "unknown", "Action", "Adventure", "Animation", "Children's", "Comedy", "Crime",
    "Documentary", "Drama", "Fantasy", "Film-Noir", "Horror", "Musical", "Mystery",
    "Romance", "Sci-Fi", "Thriller", "War", "Western",
)


@dataclass(frozen=True)
class Movie:
    """One movie of the list, as the item-features file records it."""

    item_id: str
    title: str  # without the year; a trailing article moved to the front
    year: int | None
    genres: tuple[str, ...]

    def categories(self) -> list[str]:
        """The genres, then `decade:1990s` when the year is known."""
        decade = [] if self.year is None else [f"decade:{self.year // 10 * 10}s"]
        return [*self.genres, *decade]

    def record(self) -> dict[str, Any]:
        """The item-features line: `{"item_id", "features": {"categories", "text"}}`."""
        return {"item_id": self.item_id,
                "features": {"categories": self.categories(), "text": self.title}}


@dataclass(frozen=True)
class Converted:
    """What `convert_movielens` wrote."""

    ratings: Path
    items: Path
    movies: int
    ratings_lines: int


def split_title(raw: str) -> tuple[str, int | None]:
    """("Toy Story", 1995) from "Toy Story (1995)"; the year None when there is none."""
    found = _YEAR.match(raw.strip())
    title, year = (found["title"], int(found["year"])) if found else (raw.strip(), None)
    article = _ARTICLE.match(title)
    if article:
        title = f"{article['article']} {article['rest']}"
    return title, year


def ratings_path(folder: Path) -> Path:
    """The ratings file of a MovieLens folder (ml-1m's `ratings.dat` or ml-100k's `u.data`)."""
    for name in RATINGS_FILES:
        if (folder / name).is_file():
            return folder / name
    raise DataFormatError(
        f"{folder} holds no {' or '.join(RATINGS_FILES)}: point at an unzipped ml-1m or "
        "ml-100k folder (docs/QUALITY.md, 'Item cold start', says where to get one)")


def read_movies(folder: Path) -> list[Movie]:
    """The movie list of an ml-1m (`movies.dat`) or ml-100k (`u.item`) folder."""
    if (folder / "movies.dat").is_file():
        return _read_ml1m(folder / "movies.dat")
    if (folder / "u.item").is_file():
        return _read_ml100k(folder / "u.item")
    raise DataFormatError(f"{folder} holds no movies.dat (ml-1m) or u.item (ml-100k)")


def convert_movielens(src: Path, out: Path) -> Converted:
    """Copy the ratings file of `src` into `out` and write `out/items.jsonl` from its movies."""
    ratings = ratings_path(src)
    movies = read_movies(src)
    out.mkdir(parents=True, exist_ok=True)
    copied = out / ratings.name
    if copied.resolve() != ratings.resolve():
        shutil.copyfile(ratings, copied)
    with copied.open("rb") as f:
        lines = sum(1 for line in f if line.strip())
    items = out / ITEMS_FILE
    with items.open("w", encoding="utf-8") as f:
        for movie in movies:
            f.write(json.dumps(movie.record(), ensure_ascii=False) + "\n")
    logger.info("movielens %s: %d ratings -> %s, %d movies -> %s", src, lines, copied,
                len(movies), items)
    return Converted(ratings=copied, items=items, movies=len(movies), ratings_lines=lines)


def _text(path: Path) -> str:
    """The file decoded as UTF-8 when valid, else latin-1 (GroupLens' own encoding)."""
    data = path.read_bytes()
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError:
        return data.decode("latin-1")


def _read_ml1m(path: Path) -> list[Movie]:
    """`MovieID::Title (Year)::Genre1|Genre2` per line."""
    movies = []
    for no, line in enumerate(_text(path).splitlines(), 1):
        if not line.strip():
            continue
        parts = line.split("::")
        if len(parts) != 3 or not parts[0].strip():
            raise DataFormatError(f"{path}:{no}: expected MovieID::Title::Genres, got {line!r}")
        title, year = split_title(parts[1])
        genres = tuple(g for g in parts[2].strip().split("|") if g)
        movies.append(Movie(parts[0].strip(), title, year, genres))
    return movies


def _read_ml100k(path: Path) -> list[Movie]:
    """`id|title|release date|video date|url|` then 19 genre flags per line."""
    movies = []
    width = 5 + len(ML100K_GENRES)
    for no, line in enumerate(_text(path).splitlines(), 1):
        if not line.strip():
            continue
        parts = line.split("|")
        if len(parts) != width or not parts[0].strip():
            raise DataFormatError(f"{path}:{no}: expected {width} '|'-separated fields, got "
                                  f"{len(parts)}: {line[:80]!r}")
        title, year = split_title(parts[1])
        if year is None and parts[2][-4:].isdigit():  # the release date: 01-Jan-1995
            year = int(parts[2][-4:])
        genres = tuple(g for g, flag in zip(ML100K_GENRES, parts[5:], strict=True)
                       if flag.strip() == "1" and g != "unknown")
        movies.append(Movie(parts[0].strip(), title, year, genres))
    return movies
