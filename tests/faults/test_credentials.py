"""Credentials masked whatever characters the password holds (SQLAlchemy accepts / and # in a
password unencoded, where urlsplit ends the address)."""

import pytest

from harness.infra.databases import mask, redact

SECRET_URLS = [
    "postgresql://harness:pa/ss#wd@db.example:5432/optuna",
    "postgresql+psycopg://harness:p%40ss@db.example/optuna",
    "http://user:s3cr/et@track.example:5000",
    "https://user:pw#x@track.example",
]


@pytest.mark.parametrize("url", SECRET_URLS)
def test_mask_hides_the_whole_password(url):
    secret = url.split("://", 1)[1].split(":", 1)[1].rsplit("@", 1)[0]
    masked = mask(url)
    assert secret not in masked
    assert "***" in masked
    assert masked.endswith(url.rsplit("@", 1)[1].split("/")[0]) or "db.example" in masked


@pytest.mark.parametrize("url", SECRET_URLS)
def test_redact_removes_the_password_from_an_error_text(url):
    secret = url.split("://", 1)[1].split(":", 1)[1].rsplit("@", 1)[0]
    text = f"could not connect to {url}: password {secret} rejected"
    assert secret not in redact(text, url)


def test_a_url_without_password_is_unchanged():
    assert mask("sqlite:///results/mlflow.db") == "sqlite:///results/mlflow.db"
    assert mask("http://127.0.0.1:5000") == "http://127.0.0.1:5000"
