"""The Colab notebooks: committed without outputs, well-formed, and runnable top to bottom.

The slow test executes `colab/train_tpu.ipynb` and then `colab/predict_video.ipynb` headless with
nbclient, `SMALL = True` injected into their "parameters" cells (papermill-style, by rewriting the
cell), in a kernel that runs this interpreter (a temporary kernelspec), so the notebooks cannot
drift away from the library APIs they call.
"""

from __future__ import annotations

import copy
import json
import re
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
COLAB = REPO / "colab"
NOTEBOOKS = ("train_tpu.ipynb", "predict_video.ipynb")
STRIP = REPO / "scripts" / "strip_notebooks.py"


def _load(name: str) -> dict:
    return json.loads((COLAB / name).read_text(encoding="utf-8"))


def _source(cell: dict) -> str:
    source = cell["source"]
    return source if isinstance(source, str) else "".join(source)


def _code_cells(notebook: dict) -> list[dict]:
    return [c for c in notebook["cells"] if c["cell_type"] == "code"]


def with_parameters(notebook: dict, **values) -> dict:
    """A copy of `notebook` whose "parameters" cell assigns `values` (each name must exist)."""
    notebook = copy.deepcopy(notebook)
    cell = next(c for c in notebook["cells"] if "parameters" in c["metadata"].get("tags", []))
    source = _source(cell)
    for name, value in values.items():
        pattern = re.compile(rf"^{name} = .*$", re.MULTILINE)
        if not pattern.search(source):
            raise KeyError(f"parameters cell has no assignment to {name}")
        source = pattern.sub(lambda _, n=name, v=value: f"{n} = {v!r}", source, count=1)
    cell["source"] = source
    return notebook


def _run_strip(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, str(STRIP), *args], capture_output=True, text=True, timeout=120
    )


# --- committed form -------------------------------------------------------------------------


def test_committed_notebooks_have_no_outputs():
    result = _run_strip("--check")
    assert result.returncode == 0, result.stdout + result.stderr


def test_strip_removes_outputs_and_check_detects_them(tmp_path):
    original = (COLAB / "train_tpu.ipynb").read_text(encoding="utf-8")
    notebook = json.loads(original)
    cell = _code_cells(notebook)[1]
    cell["outputs"] = [{"name": "stdout", "output_type": "stream", "text": ["hi\n"]}]
    cell["execution_count"] = 3
    cell["metadata"]["execution"] = {"iopub.status.idle": "2026-01-01T00:00:00Z"}
    notebook["metadata"]["widgets"] = {"application/vnd.jupyter.widget-state+json": {}}
    path = tmp_path / "dirty.ipynb"
    path.write_text(json.dumps(notebook), encoding="utf-8")

    check = _run_strip("--check", str(path))
    assert check.returncode == 1
    assert "dirty.ipynb" in check.stdout and "1 outputs" in check.stdout
    assert _run_strip(str(path)).returncode == 0
    assert _run_strip("--check", str(path)).returncode == 0
    # Stripping restores the committed bytes: tags, ids and notebook metadata survive.
    assert path.read_text(encoding="utf-8") == original


def test_strip_rejects_a_file_that_is_not_a_notebook(tmp_path):
    path = tmp_path / "broken.ipynb"
    path.write_text('{"cells": 3}', encoding="utf-8")
    result = _run_strip("--check", str(path))
    assert result.returncode == 2
    assert "broken.ipynb" in result.stderr and "cells" in result.stderr
    assert path.read_text(encoding="utf-8") == '{"cells": 3}'


@pytest.mark.parametrize("name", NOTEBOOKS)
def test_notebook_structure(name):
    from IPython.core.inputtransformer2 import TransformerManager

    notebook = _load(name)
    assert notebook["metadata"]["accelerator"] == "TPU"
    code = _code_cells(notebook)
    assert code[0]["metadata"].get("tags") == ["parameters"]
    parameters = _source(code[0])
    for assignment in ("SMALL = False", "VIPDL_SOURCE = ", "USE_DRIVE = True"):
        assert assignment in parameters
    transformer = TransformerManager()
    for index, cell in enumerate(code):
        source = _source(cell)
        compile(transformer.transform_cell(source), f"{name} code cell {index}", "exec")
        # Legacy TPU-Node setup; Colab TPUs are TPU VMs now.
        assert "setup_tpu" not in source
        # TensorFlow may be absent on Colab TPU runtimes until installed; only vipdl imports it.
        assert not re.search(r"^\s*(import|from) tensorflow\b", source, re.MULTILINE)
    # The install cell is the first cell that does work.
    assert "_install(CLONE_DIR)" in _source(code[1])


def _install_cell(name: str = "train_tpu.ipynb") -> str:
    return _source(_code_cells(_load(name))[1])


def test_both_notebooks_share_one_install_cell():
    assert _install_cell("train_tpu.ipynb") == _install_cell("predict_video.ipynb")


@pytest.fixture
def install_namespace(capsys):
    """The install cell executed here, inside the checkout (it must install nothing)."""
    namespace = {"VIPDL_SOURCE": "https://example.invalid/vipdl", "VIPDL_REF": "main"}
    exec(compile(_install_cell(), "install cell", "exec"), namespace)
    assert "nothing installed" in capsys.readouterr().out
    assert namespace["REPO_DIR"] == REPO
    return namespace


@pytest.mark.parametrize(
    "accelerator, versions, expected",
    [
        # Colab TPU image: old JAX, no TensorFlow -> JAX pinned with the TPU extra, vipdl's
        # requirements (tensorflow-cpu included) in one pip call.
        ("tpu", {"jax": "0.5.2", "libtpu": "0.0.10"}, [["REPO", "jax[tpu]==0.10.2"]]),
        # GPU image with a supported JAX and the full tensorflow: JAX held, TF kept.
        ("gpu", {"jax": "0.11.1", "tensorflow": "2.20.0"}, [["--no-deps", "REPO"], "DEPS"]),
        ("cpu", {}, [["REPO", "jax==0.10.2"]]),
    ],
)
def test_install_cell_requirements_on_colab(install_namespace, accelerator, versions, expected):
    calls = []
    install_namespace["_pip"] = lambda *args: calls.append(list(args))
    install_namespace["_version"] = versions.get
    install_namespace["_accelerator"] = lambda: accelerator
    install_namespace["_install"](REPO)
    expected = [[str(REPO) if a == "REPO" else a for a in call] if call != "DEPS" else call
                for call in expected]
    assert len(calls) == len(expected)
    for call, want in zip(calls, expected):
        if want == "DEPS":
            assert f"jax=={versions['jax']}" in call
            assert any(d.startswith("flax") for d in call)
            assert not any(d.startswith("tensorflow-cpu") for d in call)
        else:
            assert call == want


def test_install_cell_release_parsing(install_namespace):
    release = install_namespace["_release"]
    assert release("0.10.2") == (0, 10, 2)
    assert release("0.12.0.1") == (0, 12, 0, 1)
    assert release("0.13.0rc1") == (0, 13, 0)
    assert release("0.4.36.dev20241201") == (0, 4, 36)
    low, high = install_namespace["JAX_RANGE"]
    assert low <= release("0.12.0.1") < high and not release("0.13.0rc1") < high


def test_readme_links_both_notebooks():
    readme = (COLAB / "README.md").read_text(encoding="utf-8")
    for name in NOTEBOOKS:
        url = f"https://colab.research.google.com/github/vipdl/vipdl/blob/main/colab/{name}"
        assert f"[![Open In Colab](https://colab.research.google.com/assets/colab-badge.svg)]({url})" in readme


def test_with_parameters_rewrites_only_named_assignments():
    notebook = with_parameters(_load("train_tpu.ipynb"), SMALL=True, WORKDIR="/tmp/x")
    source = _source(_code_cells(notebook)[0])
    assert "SMALL = True\n" in source and "WORKDIR = '/tmp/x'\n" in source
    assert 'DATA_SOURCE = "synthetic"' in source
    with pytest.raises(KeyError, match="NOT_A_PARAMETER"):
        with_parameters(notebook, NOT_A_PARAMETER=1)


# --- execution ------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def kernel_name(tmp_path_factory):
    """A kernelspec running this interpreter, found through a temporary JUPYTER_PATH."""
    root = tmp_path_factory.mktemp("jupyter")
    name = "vipdl-notebook-test"
    spec_dir = root / "kernels" / name
    spec_dir.mkdir(parents=True)
    spec = {
        "argv": [sys.executable, "-m", "ipykernel_launcher", "-f", "{connection_file}"],
        "display_name": "vipdl test kernel",
        "language": "python",
        "env": {
            "JAX_PLATFORMS": "cpu",
            # One CPU device: the trainer's multi-device paths are covered by its own tests, and
            # CI time here goes to compiling; unoptimised XLA compiles several times faster.
            "XLA_FLAGS": "--xla_force_host_platform_device_count=1",
            "JAX_DISABLE_MOST_OPTIMIZATIONS": "1",
            "TF_CPP_MIN_LOG_LEVEL": "2",
        },
    }
    (spec_dir / "kernel.json").write_text(json.dumps(spec))
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("JUPYTER_PATH", str(root))
        yield name


def _execute(notebook: dict, cwd: Path, kernel: str, save_as: Path) -> dict:
    import nbclient
    import nbformat

    nb = nbformat.reads(json.dumps(notebook), as_version=4)  # Joins list-of-lines sources.
    client = nbclient.NotebookClient(
        nb, kernel_name=kernel, timeout=900, resources={"metadata": {"path": str(cwd)}}
    )
    try:
        client.execute()
    finally:  # Kept for debugging a failure.
        save_as.write_text(nbformat.writes(nb), encoding="utf-8")
    return nb


def _stdout(notebook) -> str:
    return "".join(
        "".join(o.get("text", "")) if isinstance(o.get("text", ""), list) else o.get("text", "")
        for cell in notebook.cells
        if cell.cell_type == "code"
        for o in cell.outputs
        if o.get("output_type") == "stream"
    )


@pytest.fixture(scope="module")
def executed(tmp_path_factory, kernel_name):
    tmp = tmp_path_factory.mktemp("colab")
    workdir, local, predict = tmp / "run", tmp / "local", tmp / "predict"
    train_nb = with_parameters(
        _load("train_tpu.ipynb"),
        SMALL=True, WORKDIR=str(workdir), LOCAL_DIR=str(local), USE_DRIVE=False,
    )
    train = _execute(train_nb, tmp, kernel_name, tmp / "train_tpu.executed.ipynb")
    predict_nb = with_parameters(
        _load("predict_video.ipynb"),
        SMALL=True, CHECKPOINT=str(workdir / "vipdl_checkpoint.zip"), OUTPUT_DIR=str(predict),
        USE_DRIVE=False,
    )
    prediction = _execute(predict_nb, tmp, kernel_name, tmp / "predict_video.executed.ipynb")
    return {"train": train, "predict": prediction, "workdir": workdir, "out": predict}


@pytest.mark.slow
def test_train_notebook_trains_resumes_evaluates_and_exports(executed):
    from vipdl import checkpointing

    workdir = executed["workdir"]
    text = _stdout(executed["train"])
    assert "falling back to CPU" in text
    assert "simulated disconnect after step 2" in text
    assert "Resumed from the checkpoint of step 2: this call started at step 3" in text
    assert "Continued the finished run from step 4 at step 5, now at step 6." in text
    assert checkpointing.load_config(str(workdir)).train.num_steps == 6
    assert Path(checkpointing.resolve_step_dir(str(workdir))).name == "6"
    assert list(workdir.glob("events.out.tfevents.*"))
    summary = json.loads((workdir / "eval" / "vpq.json").read_text())
    assert set(summary["per_k"]) == {"0", "1", "2", "3"}
    # An untrained 4-step model may predict no segment at all, leaving VPQ undefined (null).
    assert summary["VPQ"] is None or 0.0 <= summary["VPQ"] <= 100.0
    assert (workdir / "eval" / "vpq_vs_k.png").is_file()
    with zipfile.ZipFile(workdir / "vipdl_checkpoint.zip") as archive:
        names = archive.namelist()
    assert "config.json" in names and any(n.startswith("checkpoints/6/state/") for n in names)


@pytest.mark.slow
def test_predict_notebook_writes_overlay_video_and_masks(executed):
    from vipdl import video_io

    out = executed["out"]
    overlay = out / "results" / "overlay.mp4"
    frames = list(video_io.read_frames(overlay))
    assert len(frames) == 6
    assert frames[0].shape[:2] == (64, 96)  # the runlocal synthetic frame size
    # The zip holds exactly the mask tree `run_prediction` wrote (a 4-step model may predict
    # only void, so the number of masks is not asserted).
    masks = out / "results" / "masks"
    written = sorted(str(p.relative_to(masks)) for p in masks.rglob("*") if p.is_file())
    with zipfile.ZipFile(out / "masks.zip") as archive:
        zipped = sorted(n for n in archive.namelist() if not n.endswith("/"))
    assert "tracks.json" in written and zipped == written
    tracks = json.loads((masks / "tracks.json").read_text())
    assert len(written) == 1 + sum(t["num_frames"] for t in tracks.values())
    outputs = [o for c in executed["predict"].cells if c.cell_type == "code" for o in c.outputs]
    # The inline overlay video (embedded mp4) and the matplotlib frame grid.
    assert any("video/mp4" in o.get("data", {}).get("text/html", "") for o in outputs)
    assert any("image/png" in o.get("data", {}) for o in outputs)
