import nbformat

from course_utils.maintenance.execute import (
    execute_many,
    execute_notebook,
    merge_streams,
)


def _write(path, *sources):
    nb = nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell(s) for s in sources])
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    nbformat.write(nb, path)
    return path


def test_execute_stores_outputs_and_runs_in_the_notebook_folder(tmp_path):
    path = _write(tmp_path / "a.ipynb", "import os; print(os.path.basename(os.getcwd()))", "1 + 1")
    seconds = execute_notebook(path)
    nb = nbformat.read(path, as_version=4)
    assert seconds > 0
    assert nb.cells[0].outputs[0]["text"].strip() == tmp_path.name
    assert nb.cells[1].outputs[0]["data"]["text/plain"] == "2"
    assert nb.cells[1].execution_count == 2


def test_execute_many_reports_failures_and_goes_on(tmp_path, capsys):
    bad = _write(tmp_path / "bad.ipynb", "raise RuntimeError('boom')")
    good = _write(tmp_path / "good.ipynb", "print('fine')")
    assert execute_many([str(bad), str(good)]) == 1
    out = capsys.readouterr().out
    assert "bad.ipynb: FAILED" in out and "good.ipynb:" in out
    assert nbformat.read(good, as_version=4).cells[0].outputs[0]["text"] == "fine\n"


def test_merge_streams_joins_consecutive_chunks_of_one_stream():
    out = nbformat.v4.new_output
    chunks = [out("stream", name="stdout", text="a\n"), out("stream", name="stdout", text="b\n"),
              out("stream", name="stderr", text="e\n"), out("stream", name="stdout", text="c\n")]
    merged = merge_streams(chunks)
    assert [(o["name"], o["text"]) for o in merged] == [("stdout", "a\nb\n"), ("stderr", "e\n"), ("stdout", "c\n")]


def test_widget_ids_are_the_same_on_every_run_and_stale_timings_go(tmp_path):
    path = _write(tmp_path / "w.ipynb", "import ipywidgets\nipywidgets.VBox([ipywidgets.IntSlider(3)])")
    nb = nbformat.read(path, as_version=4)
    nb.cells[0].metadata["execution"] = {"iopub.execute_input": "2020-01-01T00:00:00Z"}
    nbformat.write(nb, path)
    execute_notebook(path)
    first = path.read_text()
    nb = nbformat.read(path, as_version=4)
    assert "execution" not in nb.cells[0].metadata
    assert nb.cells[0].execution_count == 1  # the seeding ran silently, before the first cell
    view = nb.cells[0].outputs[0]["data"]["application/vnd.jupyter.widget-view+json"]["model_id"]
    assert view in nb.metadata["widgets"]["application/vnd.jupyter.widget-state+json"]["state"]
    execute_notebook(path)
    assert path.read_text() == first
