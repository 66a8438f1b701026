"""Weights discovery and ``python -m harness weights`` (never touches the network)."""

from __future__ import annotations

import argparse
import socket
import urllib.error
from pathlib import Path

import pytest
import torch
from torch_fidelity.feature_extractor_inceptionv3 import URL_INCEPTION_V3

from harness.cli import main
from harness.metrics import weights
from harness.metrics.weights import INCEPTION_WEIGHTS_FILE, find_inception_weights, known_weights, weights_command
from torchvision.models import ResNet18_Weights, Wide_ResNet50_2_Weights

RESNET18_WEIGHTS_FILE = "resnet18-f37072fd.pth"


@pytest.fixture(autouse=True)
def offline_home(monkeypatch, tmp_path) -> Path:
    def refuse(*args, **kwargs):
        raise AssertionError("network access attempted")

    monkeypatch.setattr(socket.socket, "connect", refuse)
    monkeypatch.setattr(socket, "create_connection", refuse)
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch-home"))
    return Path(torch.hub.get_dir()) / "checkpoints"


def test_known_file_names_and_urls_come_from_the_metrics_and_the_methods():
    known = {w.name: w for w in known_weights()}
    assert INCEPTION_WEIGHTS_FILE == "weights-inception-2015-12-05-6726825d.pth"
    assert known["inception-v3"].url == URL_INCEPTION_V3
    assert known["resnet18-imagenet"].url == ResNet18_Weights.IMAGENET1K_V1.url  # declared by the method
    assert known["resnet18-imagenet"].file == RESNET18_WEIGHTS_FILE
    assert [known[n].hash_prefix for n in ("inception-v3", "resnet18-imagenet")] == ["6726825d", "f37072fd"]


def test_find_inception_weights(offline_home, tmp_path):
    found, looked = find_inception_weights(None)
    assert found is None and looked == [str(offline_home / INCEPTION_WEIGHTS_FILE)]
    offline_home.mkdir(parents=True)
    (offline_home / INCEPTION_WEIGHTS_FILE).write_bytes(b"x")
    assert find_inception_weights(None)[0] == offline_home / INCEPTION_WEIGHTS_FILE
    explicit = tmp_path / "mine.pth"
    assert find_inception_weights(str(explicit)) == (None, [str(explicit)])  # no silent fallback
    explicit.write_bytes(b"x")
    assert find_inception_weights(str(explicit))[0] == explicit


def test_table_lists_found_and_missing(offline_home, tmp_path, capsys):
    mine = tmp_path / "inception.pth"
    mine.write_bytes(b"x")
    assert main(["weights", "--inception-weights", str(mine)]) == 0
    out = capsys.readouterr().out
    assert f"inception-v3       found    {mine}" in out
    assert f"resnet18-imagenet  missing  {offline_home / RESNET18_WEIGHTS_FILE}" in out
    assert "weights --fetch" in out


def test_fetch_network_failure_is_one_error_line(monkeypatch, capsys):
    def offline(url, dst, hash_prefix=None, progress=True):
        raise urllib.error.URLError("[Errno -3] Temporary failure in name resolution")

    monkeypatch.setattr(weights.torch.hub, "download_url_to_file", offline)
    assert weights_command(argparse.Namespace(fetch=True, inception_weights=None)) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("error: could not download inception-v3")


def test_fetch_downloads_missing_into_hub_cache(monkeypatch, offline_home, capsys):
    calls = []

    def fake_download(url, dst, hash_prefix=None, progress=True):
        calls.append((url, Path(dst).name, hash_prefix))
        Path(dst).write_bytes(b"weights")

    monkeypatch.setattr(weights.torch.hub, "download_url_to_file", fake_download)
    assert weights_command(argparse.Namespace(fetch=True, inception_weights=None)) == 0
    assert calls == [(URL_INCEPTION_V3, INCEPTION_WEIGHTS_FILE, "6726825d"),
                     (Wide_ResNet50_2_Weights.IMAGENET1K_V1.url, "wide_resnet50_2-95faca4d.pth", "95faca4d"),
                     (ResNet18_Weights.IMAGENET1K_V1.url, RESNET18_WEIGHTS_FILE, "f37072fd")]
    out = capsys.readouterr().out
    assert "downloading" in out and "missing  " not in out
    calls.clear()
    assert weights_command(argparse.Namespace(fetch=True, inception_weights=None)) == 0
    assert calls == []  # present files are not fetched again
