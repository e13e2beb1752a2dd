"""Live Hub search and precheck against a stand-in Hub on loopback (tests/hub_stub.py).

The real huggingface_hub client runs unchanged in a child process whose ``HF_ENDPOINT`` points
at the stand-in (the client reads it at import, and this test session is offline by design).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap

import pytest
from hub_stub import SLOW_S, StubHub

from conftest import ROOT, free_port
from micam_core.hub import HUB_UNREACHABLE, HubModel, precheck, search_models

CHILD = textwrap.dedent("""
    import json, sys, time
    from dataclasses import asdict
    import httpx, huggingface_hub.constants  # imported before the clock starts
    from micam_core.hub import precheck, search_models

    out = {}
    for query in sys.argv[1].split(","):
        start = time.perf_counter()
        result = search_models(query, limit=10)
        out["search:" + query] = {**asdict(result), "seconds": time.perf_counter() - start}
    for repo in sys.argv[2].split(","):
        out["precheck:" + repo] = asdict(precheck(repo, max_bytes=1024 * 2**20))
    print(json.dumps(out))
""")
SEARCHES = "slow,resnet,hostile,broken,garbage,nothing,resnet,Resnet"
REPOS = ("timm/resnet18.a1_in1k,evil/unknown-arch,evil/huge-weights,evil/absurd-config,evil/not-json,"
         "evil/no-weights,evil/bert,missing/repo,hf-hub:timm/resnet18.a1_in1k,evil/crop-tiny,evil/crop-1e-9,"
         "evil/input-2048,evil/mean-nan,evil/std-zero,evil/labels-long,evil/classes-many,ok/at-the-bounds")


def run_child(endpoint: str, searches: str, repos: str, tmp_path) -> dict:
    env = {**os.environ, "HF_ENDPOINT": endpoint, "HF_HUB_OFFLINE": "0", "HF_HOME": str(tmp_path / "hf"),
           "HF_HUB_CACHE": str(tmp_path / "hf" / "hub"), "HF_HUB_DISABLE_TELEMETRY": "1", "HF_TOKEN": "",
           "PYTHONPATH": str(ROOT), "HF_HUB_ETAG_TIMEOUT": "5", "HF_HUB_DOWNLOAD_TIMEOUT": "5"}
    proc = subprocess.run([sys.executable, "-c", CHILD, searches, repos], env=env, capture_output=True, text=True,
                          timeout=300, cwd=ROOT)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return json.loads(proc.stdout.strip().splitlines()[-1])


@pytest.fixture(scope="module")
def stub_run(tmp_path_factory):
    with StubHub() as hub:
        results = run_child(hub.url, SEARCHES, REPOS, tmp_path_factory.mktemp("hub"))
        yield results, list(hub.requests)


def ids(result: dict) -> list[str]:
    return [m["id"] for m in result["models"]]


@pytest.mark.slow
def test_search_lists_timm_classifiers_with_downloads_and_size(stub_run):
    results, requests = stub_run
    found = results["search:resnet"]
    assert found["message"] is None
    assert ids(found) == ["timm/resnet50.a1_in1k", "timm/resnet18.a1_in1k", "timm/resnet34.a1_in1k"]
    first = found["models"][0]
    assert first["downloads"] == 1_234_567 and first["weight_bytes"] == 4 * 25_557_032
    assert first["parameters"] == 25_557_032
    assert found["models"][2]["weight_bytes"] is None
    search = [r for r in requests if r.startswith("GET /api/models?") and "search=resnet" in r][0]
    for part in ("filter=timm", "pipeline_tag=image-classification", "sort=downloads", "limit=10",
                 "expand=downloads", "expand=safetensors"):
        assert part in search, (part, search)


def test_searches_are_cached_briefly_per_query(stub_run):
    asked = [r for r in stub_run[1] if r.startswith("GET /api/models?") and "search=resnet" in r.lower()]
    assert len(asked) == 1, asked  # "resnet" three times (once capitalised): the Hub was asked once


def test_search_answers_within_a_second_of_the_hub(stub_run):
    slow = stub_run[0]["search:slow"]
    assert ids(slow) == ["timm/resnet50.a1_in1k"]
    assert slow["seconds"] < SLOW_S + 1.0, slow["seconds"]


def test_hostile_search_answers(stub_run):
    hostile = stub_run[0]["search:hostile"]
    assert ids(hostile) == ["ok/huge-numbers", "ok/nan", "ok/strings", "ok/missing-fields", "ok/fine"]
    assert hostile["skipped"] == 3  # markup in an id, '..' path, a number as id
    by_id = {m["id"]: m for m in hostile["models"]}
    for repo in ("ok/huge-numbers", "ok/nan", "ok/strings", "ok/missing-fields"):
        assert by_id[repo]["downloads"] is None and by_id[repo]["weight_bytes"] is None, by_id[repo]
    assert by_id["ok/fine"] == {"id": "ok/fine", "downloads": 7, "weight_bytes": 2000, "parameters": 1000}
    garbage = stub_run[0]["search:garbage"]
    assert garbage["models"] == [] and "could not be read" in garbage["message"], garbage
    broken = stub_run[0]["search:broken"]  # "total" missing: the hit is kept, its parameter count unknown
    assert broken["models"] == [{"id": "ok/x", "downloads": None, "weight_bytes": 4, "parameters": None}]
    assert "No timm image classifier" in stub_run[0]["search:nothing"]["message"]


def test_precheck_reads_only_the_config_and_the_file_list(stub_run):
    results, requests = stub_run
    good = results["precheck:timm/resnet18.a1_in1k"]
    assert good["ok"], good
    assert (good["architecture"], good["num_classes"], good["input_size"]) == ("resnet18", 1000, [3, 224, 224])
    assert good["weight_bytes"] == 47 * 2**20
    assert results["precheck:hf-hub:timm/resnet18.a1_in1k"]["ok"]
    bounds = results["precheck:ok/at-the-bounds"]
    assert bounds["ok"] and bounds["input_size"] == [3, 448, 32], bounds
    fetched = [r for r in requests if "/resolve/" in r]
    assert fetched and all(r.split("?")[0].endswith("/config.json") for r in fetched), fetched
    assert any(r.startswith("GET /api/models/timm/resnet18.a1_in1k") and "blobs=true" in r.lower() for r in requests)


@pytest.mark.parametrize("repo, words", [
    ("evil/unknown-arch", "does not know the architecture"),
    ("evil/huge-weights", "the limit here is 1024 MB"),
    ("evil/absurd-config", "input_size = [3, -1, 1000000000.0]"),
    ("evil/crop-tiny", "crop_pct = 0.01; this server allows a number from 0.5 to 1.25"),
    ("evil/crop-1e-9", "crop_pct = 1e-09"),
    ("evil/input-2048", "input_size = [3, 2048, 2048]; this server allows [3, H, W] with H and W whole numbers "
                        "from 32 to 448 px"),
    ("evil/mean-nan", "mean = [nan, 0.5, 0.5]; this server allows three finite numbers from 0 to 1"),
    ("evil/std-zero", "std = [0.0, 0.2, 0.2]"),
    ("evil/labels-long", "label_names = 'a name of 5000 characters'"),
    ("evil/classes-many", "num_classes = 10000000"),
    ("evil/not-json", "not valid JSON"),
    ("evil/no-weights", "no weights file"),
    ("evil/bert", "not a timm model"),
    ("missing/repo", "no such public model"),
])
def test_precheck_refuses_hostile_models(stub_run, repo, words):
    check = stub_run[0][f"precheck:{repo}"]
    assert not check["ok"] and words in check["message"], check
    assert "<script>" not in check["message"]


def test_offline_gives_a_clear_message_without_calling():
    assert os.environ["HF_HUB_OFFLINE"] == "1"  # conftest
    assert search_models("resnet").message == HUB_UNREACHABLE
    assert precheck("timm/resnet18.a1_in1k").message == HUB_UNREACHABLE
    assert "<" not in precheck("<b>bad</b>").message


def test_unreachable_hub_gives_the_same_message(tmp_path):
    results = run_child(f"http://127.0.0.1:{free_port()}", "resnet", "timm/resnet18.a1_in1k", tmp_path)
    assert results["search:resnet"]["message"] == HUB_UNREACHABLE
    assert results["search:resnet"]["seconds"] < 3.0  # no 20 s of client back-off
    assert results["precheck:timm/resnet18.a1_in1k"]["message"] == HUB_UNREACHABLE


def test_describe():
    assert HubModel("timm/x", 1_234_567, 98 * 2**20, None).describe() == "timm/x (1.2M downloads, 98 MB)"
    assert HubModel("timm/x", None, None, None).describe() == "timm/x"


APP_CHILD = textwrap.dedent("""
    import json, sys, time
    from micam_app.paper import hub_choices

    start = time.perf_counter()
    choices, note = hub_choices(sys.argv[1])
    print(json.dumps({"choices": choices, "note": note, "seconds": time.perf_counter() - start}))
""")


@pytest.mark.slow
def test_the_model_box_lists_hub_hits_after_the_curated_models(tmp_path):
    from micam_app.views import POPULAR_MODELS

    with StubHub() as hub:
        env = {**os.environ, "HF_ENDPOINT": hub.url, "HF_HUB_OFFLINE": "0", "HF_HOME": str(tmp_path / "hf"),
               "HF_HUB_CACHE": str(tmp_path / "hf" / "hub"), "HF_TOKEN": "", "PYTHONPATH": str(ROOT)}
        proc = subprocess.run([sys.executable, "-c", APP_CHILD, "resnet"], env=env, capture_output=True, text=True,
                              timeout=300, cwd=ROOT)
    assert proc.returncode == 0, proc.stderr[-3000:]
    out = json.loads(proc.stdout.strip().splitlines()[-1])
    choices = [tuple(c) for c in out["choices"]]
    assert choices[:len(POPULAR_MODELS)] == POPULAR_MODELS
    hits = choices[len(POPULAR_MODELS):]
    assert [spec for _, spec in hits] == ["hf-hub:timm/resnet50.a1_in1k", "hf-hub:timm/resnet18.a1_in1k",
                                          "hf-hub:timm/resnet34.a1_in1k"]
    assert "downloads" in hits[0][0] and "3 timm classifiers" in out["note"]
    assert out["seconds"] < 1.0


@pytest.mark.slow
def test_the_model_box_keeps_the_curated_list_offline():
    from micam_app.paper import hub_choices
    from micam_app.views import POPULAR_MODELS

    choices, note = hub_choices("resnet")  # this test session is offline
    assert choices == POPULAR_MODELS and "cannot be reached" in note


# --- a Hub that hangs, drips, fails or floods: every call gives up within its deadline, saying what happened ---
HOSTILE_SEARCH = "hang,drip,error500,huge,huge-undeclared"
HOSTILE_REPOS = "evil/hang-config,evil/drip-config,evil/http-500,evil/huge-config"
SEARCH_LIMIT_S, MODEL_LIMIT_S = 10.0, 30.0


@pytest.fixture(scope="module")
def hostile_run(tmp_path_factory):
    child = CHILD.replace('out["precheck:" + repo] = asdict(precheck(repo, max_bytes=1024 * 2**20))',
                          'start = time.perf_counter(); out["precheck:" + repo] = {**asdict(precheck(repo)), '
                          '"seconds": time.perf_counter() - start}')
    child = child.replace("out = {}", textwrap.dedent("""
        import resource, timm, micam_core.model_config  # everything a precheck imports, before the baseline
        out = {"steady_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}"""))
    child = child.replace("print(json.dumps(out))", textwrap.dedent("""
        out["peak_rss_mb"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
        from micam_core import load_model
        for spec in ("hf-hub:evil/hang-config", "hf-hub:evil/http-500"):
            start = time.perf_counter()
            try:
                load_model(spec, device="cpu")
                message = "loaded"
            except Exception as err:
                message = f"{type(err).__name__}: {err}"
            out["load:" + spec] = {"message": message, "seconds": time.perf_counter() - start}
        print(json.dumps(out))"""))
    with StubHub() as hub:
        env = {**os.environ, "HF_ENDPOINT": hub.url, "HF_HUB_OFFLINE": "0", "HF_HUB_DISABLE_TELEMETRY": "1",
               "HF_HOME": str(tmp_path_factory.mktemp("hf")), "PYTHONPATH": str(ROOT)}
        proc = subprocess.run([sys.executable, "-c", child, HOSTILE_SEARCH, HOSTILE_REPOS], env=env,
                              capture_output=True, text=True, timeout=300, cwd=ROOT)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return json.loads(proc.stdout.strip().splitlines()[-1])


@pytest.mark.slow
@pytest.mark.parametrize("query, words", [
    ("hang", "the Hub did not answer in 8 s"), ("drip", "the Hub did not answer in 8 s"),
    ("error500", "the Hub answered with an error (HTTP 500)"), ("huge", "larger than 4 MB"),
    ("huge-undeclared", "larger than 4 MB")])
def test_a_hostile_hub_search_gives_up_in_time_with_the_right_sentence(hostile_run, query, words):
    result = hostile_run[f"search:{query}"]
    assert result["models"] == [] and words in result["message"], result
    assert "matches" not in result["message"] and result["seconds"] < SEARCH_LIMIT_S


@pytest.mark.slow
@pytest.mark.parametrize("repo, words", [
    ("evil/hang-config", "the Hub did not answer in 10 s"), ("evil/drip-config", "the Hub did not answer in 10 s"),
    ("evil/http-500", "the Hub answered with an error (HTTP 500)"), ("evil/huge-config", "larger than 1 MB")])
def test_a_hostile_hub_precheck_gives_up_in_time_with_the_right_sentence(hostile_run, repo, words):
    check = hostile_run[f"precheck:{repo}"]
    assert not check["ok"] and words in check["message"], check
    assert "cannot be reached" not in check["message"] and check["seconds"] < MODEL_LIMIT_S


@pytest.mark.slow
def test_hostile_answers_are_not_held_in_memory(hostile_run):
    grew = hostile_run["peak_rss_mb"] - hostile_run["steady_rss_mb"]
    assert grew < 50, grew  # 300 MB answers were refused, not read (round 3: +480 MB)


@pytest.mark.slow
@pytest.mark.parametrize("spec, words", [("hf-hub:evil/hang-config", "the Hub did not answer in 10 s"),
                                         ("hf-hub:evil/http-500", "the Hub answered with an error (HTTP 500)")])
def test_a_model_load_from_a_hostile_hub_gives_up_in_time(hostile_run, spec, words):
    load = hostile_run[f"load:{spec}"]
    assert load["message"].startswith("ModelLoadError") and words in load["message"], load
    assert load["seconds"] < MODEL_LIMIT_S
