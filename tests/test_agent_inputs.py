"""The MCP tool's image argument: data: URIs and public http(s) URLs; everything else a sentence of ours."""

from __future__ import annotations

import base64

import pytest

from conftest import EXAMPLES
from micam_app.agent import image_bytes
from micam_core import MicamError


def test_a_data_uri_gives_the_file_bytes():
    data = (EXAMPLES / "coffee.jpg").read_bytes()
    assert image_bytes("data:image/jpeg;base64," + base64.b64encode(data).decode()) == data
    wrapped = base64.encodebytes(data).decode()  # line breaks inside the payload are tolerated
    assert image_bytes("DATA:image/jpeg;base64," + wrapped) == data


@pytest.mark.parametrize("image,sentence", [
    ("", "No image given"),
    ("/home/me/cat.jpg", "a file path on your machine cannot reach this server"),
    ("C:\\\\Users\\\\me\\\\cat.jpg", "must be a data: URI"),
    ("ftp://example.org/cat.jpg", "must be a data: URI"),
    ("data:image/png,rawbytes", "must be base64-encoded"),
    ("data:image/png;base64,%%%", "not valid base64"),
    ("http://127.0.0.1/cat.jpg", "private or local address"),
    ("http://169.254.169.254/latest/meta-data", "private or local address"),
    ("http://[::1]:8080/cat.jpg", "private or local address"),
    ("https://", "not an http(s) URL with a host name"),
])
def test_refusals_are_sentences(image, sentence, monkeypatch):
    monkeypatch.delenv("MICAM_ALLOW_PRIVATE_URLS", raising=False)
    with pytest.raises(MicamError, match=None) as caught:
        image_bytes(image)
    assert sentence in str(caught.value)


def test_an_oversized_data_uri_is_refused_before_decoding():
    with pytest.raises(MicamError, match="larger than 20 MB"):
        image_bytes("data:image/png;base64," + "A" * (28 * 2**20))
