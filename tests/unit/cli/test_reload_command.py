"""`streamrec reload` fails clearly when no worker answers."""

from __future__ import annotations

import pytest

from streamrec.cli.main import main
from tests.conftest import free_port


def test_reload_without_a_worker_exits_2_naming_the_url(capsys: pytest.CaptureFixture[str]) -> None:
    url = f"http://127.0.0.1:{free_port()}"
    assert main(["reload", "--url", url, "--timeout", "2"]) == 2
    err = capsys.readouterr().err
    assert f"no worker answers at {url}/reload" in err
    assert "--url" in err
