"""Finding, downloading (faked, never over the network), verifying and splitting Fashion-MNIST."""

from __future__ import annotations

import gzip
import hashlib
import urllib.error
import urllib.request

import numpy as np
import pytest

from training.data import fashion_mnist as fm
from training.data.idx import read_idx_bytes

REAL_SYSTEM_DIR = fm.SYSTEM_DIR  # captured before any test patches it


class FakeResponse:
    def __init__(self, blob: bytes):
        self.blob = blob

    def read(self) -> bytes:
        return self.blob

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        return False


@pytest.fixture
def fake_urlopen(monkeypatch):
    """Factory: serve `serve(url) -> bytes` from urllib.request.urlopen and record the URLs asked for."""

    def install(serve):
        calls: list[str] = []

        def urlopen(url, *args, **kwargs):
            calls.append(url)
            return FakeResponse(serve(url))

        monkeypatch.setattr(urllib.request, "urlopen", urlopen)
        return calls

    return install


def test_loads_explicit_folder(make_fake_fashion, hermetic_search):
    d = make_fake_fashion(96, 32)
    ds = fm.load(d)
    assert ds.source == d
    assert ds.train_images.shape == (96, 28, 28) and ds.train_images.dtype == np.uint8
    assert ds.test_images.shape == (32, 28, 28) and ds.test_images.dtype == np.uint8
    assert ds.train_labels.shape == (96,) and ds.train_labels.dtype == np.int64
    assert ds.test_labels.shape == (32,) and ds.test_labels.dtype == np.int64
    assert set(np.unique(ds.train_labels)) == set(range(10))


def test_checksums_are_over_decompressed_bytes(make_fake_fashion, hermetic_search):
    d = make_fake_fashion()
    ds = fm.load(d)
    assert set(ds.sha256) == {f.removesuffix(".gz") for f, _ in fm.FILES.values()}
    for fname, _ in fm.FILES.values():
        assert ds.sha256[fname.removesuffix(".gz")] == hashlib.sha256(read_idx_bytes(d / fname)).hexdigest()


def test_fake_data_is_not_official(make_fake_fashion, hermetic_search):
    assert fm.load(make_fake_fashion()).official is False


def test_accepts_uncompressed_files(make_fake_fashion, hermetic_search):
    gz, raw = make_fake_fashion(seed=3), make_fake_fashion(seed=3, compress=False)
    assert not list(raw.glob("*.gz"))
    a, b = fm.load(gz), fm.load(raw)
    np.testing.assert_array_equal(a.train_images, b.train_images)
    assert a.sha256 == b.sha256  # same data, same checksums, whatever the compression


def test_candidate_dirs_order(monkeypatch, hermetic_search, tmp_path):
    system, cache = hermetic_search
    monkeypatch.setenv("ZOOSERVE_DATA", str(tmp_path / "env"))
    assert fm.candidate_dirs(tmp_path / "flag") == [tmp_path / "flag", tmp_path / "env", system, cache]
    monkeypatch.delenv("ZOOSERVE_DATA")
    assert fm.candidate_dirs(None) == [system, cache]


def test_data_flag_wins_over_environment(make_fake_fashion, hermetic_search, monkeypatch):
    flag, env = make_fake_fashion(seed=1), make_fake_fashion(seed=2)
    monkeypatch.setenv("ZOOSERVE_DATA", str(env))
    assert fm.load(flag).source == flag
    assert fm.load(None).source == env


def test_environment_wins_over_system_and_cache(make_fake_fashion, hermetic_search, monkeypatch):
    env, system, cache = make_fake_fashion(seed=1), make_fake_fashion(seed=2), make_fake_fashion(seed=3)
    monkeypatch.setattr(fm, "SYSTEM_DIR", system)
    monkeypatch.setattr(fm, "CACHE_DIR", cache)
    monkeypatch.setenv("ZOOSERVE_DATA", str(env))
    assert fm.load().source == env
    monkeypatch.delenv("ZOOSERVE_DATA")
    assert fm.load().source == system
    monkeypatch.setattr(fm, "SYSTEM_DIR", system.parent / "nowhere")
    assert fm.load().source == cache


def test_incomplete_environment_folder_is_skipped(make_fake_fashion, hermetic_search, monkeypatch):
    env, system = make_fake_fashion(seed=1), make_fake_fashion(seed=2)
    (env / "t10k-labels-idx1-ubyte.gz").unlink()
    monkeypatch.setenv("ZOOSERVE_DATA", str(env))
    monkeypatch.setattr(fm, "SYSTEM_DIR", system)
    assert fm.load(allow_download=False).source == system


@pytest.mark.parametrize("missing", [f for f, _ in fm.FILES.values()])
def test_explicit_folder_missing_a_file(make_fake_fashion, hermetic_search, monkeypatch, missing):
    d, env = make_fake_fashion(seed=1), make_fake_fashion(seed=2)
    (d / missing).unlink()
    monkeypatch.setenv("ZOOSERVE_DATA", str(env))  # a usable fallback must not hide the user's mistake
    with pytest.raises(fm.DatasetUnavailable) as err:
        fm.load(d)
    assert str(d) in str(err.value)
    assert fm.HOW_TO_GET in str(err.value)
    assert "apt-get install dataset-fashion-mnist" in str(err.value)


def test_explicit_folder_that_does_not_exist(hermetic_search, tmp_path):
    with pytest.raises(fm.DatasetUnavailable, match="does not hold the four Fashion-MNIST idx files"):
        fm.load(tmp_path / "no-such-dir")


def test_not_found_without_download(hermetic_search, fake_urlopen):
    calls = fake_urlopen(lambda url: pytest.fail(f"must not download {url}"))
    with pytest.raises(fm.DatasetUnavailable) as err:
        fm.load(allow_download=False)
    assert str(err.value) == fm.HOW_TO_GET
    assert calls == []


@pytest.mark.parametrize("exc", [urllib.error.URLError("[Errno -3] name resolution failed"),
                                 TimeoutError("timed out"), ConnectionResetError("reset by peer")])
def test_offline_download_is_dataset_unavailable(hermetic_search, monkeypatch, exc):
    _, cache = hermetic_search
    asked = []

    def offline(url, *args, **kwargs):
        asked.append(url)
        raise exc

    monkeypatch.setattr(urllib.request, "urlopen", offline)
    with pytest.raises(fm.DatasetUnavailable) as err:
        fm.load()
    message = str(err.value)
    assert message.startswith(f"could not download {fm.URL_BASE}")
    assert fm.HOW_TO_GET in message
    assert asked == [fm.URL_BASE + fm.FILES["train_images"][0]]  # gave up at the first failure
    assert not any(cache.iterdir())


def test_download_rejects_checksum_mismatch(tmp_path, fake_urlopen):
    bogus = gzip.compress(b"\x00\x00\x08\x01\x00\x00\x00\x01x")
    calls = fake_urlopen(lambda url: bogus)
    dest = tmp_path / "cache"
    with pytest.raises(fm.DatasetUnavailable, match="checksum mismatch") as err:
        fm.download(dest)
    fname, sha = fm.FILES["train_images"]
    assert calls == [fm.URL_BASE + fname]
    assert sha in str(err.value)
    assert hashlib.sha256(gzip.decompress(bogus)).hexdigest() in str(err.value)
    assert list(dest.iterdir()) == []  # neither the file nor a partial copy is kept


def test_load_rejects_tampered_download(hermetic_search, fake_urlopen, make_fake_fashion):
    # Even a well-formed idx file is refused when it is not the official one.
    fake = make_fake_fashion()
    fake_urlopen(lambda url: (fake / url.rsplit("/", 1)[1]).read_bytes())
    with pytest.raises(fm.DatasetUnavailable, match="checksum mismatch"):
        fm.load()
    _, cache = hermetic_search
    assert not list(cache.glob("*.gz"))


def test_download_skips_files_already_present(tmp_path, fake_urlopen):
    dest = tmp_path / "cache"
    dest.mkdir()
    for fname, _ in fm.FILES.values():
        (dest / fname).write_bytes(b"already here")
    calls = fake_urlopen(lambda url: pytest.fail(f"must not download {url}"))
    assert fm.download(dest) == dest
    assert calls == []


@pytest.mark.integration
def test_download_keeps_verified_files(tmp_path, fake_urlopen):
    """Serve the label files from the real dataset (recompressed, as mirrors do) through a fake urlopen."""
    if not fm._has_all(REAL_SYSTEM_DIR):
        pytest.skip(f"needs the real Fashion-MNIST in {REAL_SYSTEM_DIR} (apt-get install dataset-fashion-mnist)")
    dest = tmp_path / "cache"
    dest.mkdir()
    served = {}
    for key in ("train_images", "test_images"):  # the big files are "already downloaded"
        fname = fm.FILES[key][0]
        (dest / fname).symlink_to(REAL_SYSTEM_DIR / fname)
    for key in ("train_labels", "test_labels"):
        fname = fm.FILES[key][0]
        served[fm.URL_BASE + fname] = gzip.compress(read_idx_bytes(REAL_SYSTEM_DIR / fname), compresslevel=1)
    calls = fake_urlopen(lambda url: served[url])
    fm.download(dest)
    assert sorted(calls) == sorted(served)
    for url, blob in served.items():
        assert (dest / url.rsplit("/", 1)[1]).read_bytes() == blob
    assert not list(dest.glob("*.part"))


def test_label_count_mismatch(make_fake_fashion, hermetic_search):
    d = make_fake_fashion(96, 32, n_train_labels=95)
    with pytest.raises(ValueError, match="train has 96 images but 95 labels"):
        fm.load(d)


def test_split_indices_disjoint_and_covering():
    train, val = fm.split_indices(100, 30, seed=7)
    assert len(train) == 70 and len(val) == 30
    assert not set(train) & set(val)
    np.testing.assert_array_equal(np.sort(np.concatenate([train, val])), np.arange(100))
    assert np.all(np.diff(train) > 0) and np.all(np.diff(val) > 0)  # sorted, no repeats


def test_split_indices_is_seeded():
    a, b, c = fm.split_indices(1000, 100, seed=1), fm.split_indices(1000, 100, seed=1), fm.split_indices(1000, 100, seed=2)
    np.testing.assert_array_equal(a[1], b[1])
    np.testing.assert_array_equal(a[0], b[0])
    assert not np.array_equal(a[1], c[1])


@pytest.mark.parametrize("val_size", [0, -1, 10, 11])
def test_split_indices_rejects_bad_sizes(val_size):
    with pytest.raises(ValueError, match="val_size"):
        fm.split_indices(10, val_size, seed=0)


def test_main_reports_found_dataset(make_fake_fashion, hermetic_search, capsys):
    d = make_fake_fashion(96, 32)
    assert fm.main(["--data", str(d), "--no-download"]) == 0
    out = capsys.readouterr().out
    assert "96 train + 32 test images" in out and str(d) in out
    assert "checksums differ from the official release" in out


def test_main_exit_code_when_unavailable(hermetic_search, capsys):
    assert fm.main(["--no-download"]) == 2
    assert "Fashion-MNIST was not found" in capsys.readouterr().err
