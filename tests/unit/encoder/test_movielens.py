"""MovieLens folders (generated here, never the real data) to ratings + item features."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from streamrec.cli.main import main
from streamrec.encoder.data import load_interactions
from streamrec.encoder.errors import DataFormatError
from streamrec.encoder.features import read_item_features
from streamrec.encoder.movielens import convert_movielens, read_movies, split_title

ML1M_MOVIES = ("1::Toy Story (1995)::Animation|Children's|Comedy\n"
               "11::American President, The (1995)::Comedy|Drama|Romance\n"
               "2565::Amélie (2001)::Comedy|Romance\n")
ML1M_RATINGS = "1::1::5::978300760\n1::11::3::978300761\n2::2565::4::978300762\n"
ML100K_ITEM = ("1|Toy Story (1995)|01-Jan-1995||http://x|0|0|0|1|1|1|0|0|0|0|0|0|0|0|0|0|0|0|0\n"
               "267|unknown||||1|0|0|0|0|0|0|0|0|0|0|0|0|0|0|0|0|0|0\n"
               "99|Nameless|01-Jan-1961||http://x|0|0|0|0|0|0|0|0|1|0|0|0|0|0|0|0|0|0|0\n")


def ml1m(folder: Path) -> Path:
    folder.mkdir()
    (folder / "movies.dat").write_bytes(ML1M_MOVIES.encode("latin-1"))  # as GroupLens ships
    (folder / "ratings.dat").write_text(ML1M_RATINGS, encoding="ascii")
    return folder


def test_titles_lose_the_year_and_put_the_article_first() -> None:
    assert split_title("Toy Story (1995)") == ("Toy Story", 1995)
    assert split_title("American President, The (1995)") == ("The American President", 1995)
    assert split_title("City of Lost Children, The (Cité des enfants perdus, La) (1995)") == (
        "City of Lost Children, The (Cité des enfants perdus, La)", 1995)
    assert split_title("unknown") == ("unknown", None)


def test_ml1m_folder_converts_to_readable_files(tmp_path: Path) -> None:
    done = convert_movielens(ml1m(tmp_path / "ml-1m"), tmp_path / "out")
    assert (done.movies, done.ratings_lines) == (3, 3)
    lines = [json.loads(x) for x in done.items.read_text(encoding="utf-8").splitlines()]
    assert lines[2] == {"item_id": "2565", "features": {
        "categories": ["Comedy", "Romance", "decade:2000s"], "text": "Amélie"}}
    features = read_item_features(done.items)  # the content tower's reader takes it as is
    assert features["11"].text == "The American President"
    assert features["1"].categories == ("Animation", "Children's", "Comedy", "decade:1990s")
    data = load_interactions(done.ratings, "movielens")
    assert (data.num_users, data.num_items, data.num_interactions) == (2, 3, 3)


def test_a_utf8_copy_reads_the_same(tmp_path: Path) -> None:
    folder = ml1m(tmp_path / "ml-1m")
    (folder / "movies.dat").write_text(ML1M_MOVIES, encoding="utf-8")
    assert read_movies(folder)[2].title == "Amélie"


def test_ml100k_folder_reads_genre_flags_and_release_year(tmp_path: Path) -> None:
    folder = tmp_path / "ml-100k"
    folder.mkdir()
    (folder / "u.item").write_bytes(ML100K_ITEM.encode("latin-1"))
    (folder / "u.data").write_text("1\t1\t5\t881250949\n2\t99\t3\t881250950\n")
    movies = {m.item_id: m for m in read_movies(folder)}
    assert movies["1"].genres == ("Animation", "Children's", "Comedy")
    assert movies["267"].categories() == []  # genre "unknown" and no date: nothing
    assert movies["99"].categories() == ["Drama", "decade:1960s"]  # year from the date
    assert main(["data", "movielens", "--src", str(folder), "--out", str(tmp_path / "o")]) == 0
    assert (tmp_path / "o" / "u.data").read_text() == (folder / "u.data").read_text()
    assert len(read_item_features(tmp_path / "o" / "items.jsonl")) == 3


def test_a_folder_without_movielens_files_is_refused(tmp_path: Path) -> None:
    with pytest.raises(DataFormatError, match=r"ratings\.dat or u\.data"):
        convert_movielens(tmp_path, tmp_path / "out")
    (tmp_path / "ratings.dat").write_text(ML1M_RATINGS)
    with pytest.raises(DataFormatError, match=r"movies\.dat"):
        convert_movielens(tmp_path, tmp_path / "out")
    (tmp_path / "movies.dat").write_text("1::Toy Story (1995)\n")
    with pytest.raises(DataFormatError, match=r"movies\.dat:1"):
        read_movies(tmp_path)
    assert main(["data", "movielens", "--src", str(tmp_path / "nowhere")]) == 2
