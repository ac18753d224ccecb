"""``lrpt bench --suite NAME``: run a benchmark suite, resumably, and aggregate its results.

A suite is a TOML file (``bench/suites/NAME.toml``)::

    description = "what the suite compares"

    [defaults]                 # any ``lrpt train`` flag (snake_case), plus tasks and seeds
    model = "smollm2-135m"
    tasks = ["mr"]
    seeds = [0]
    steps = 100

    [[run]]                    # one configuration
    name = "ulpt-n100-r2"      # unique; a directory name
    method = "ulpt"
    options = { num_tokens = 100, rank = 2 }   # the method's options
    # any key of [defaults] here overrides it for this configuration

Each configuration runs on each of its tasks with each of its seeds. The runs are ordered seed by
seed (every configuration and task with the first seed, then the second seed, ...), so that a
suite stopped half-way already has a complete single-seed table. An entry's ``stage = K``
(default 0) puts it after every entry of a lower stage, all seeds included: the core comparison
completes before the extra configurations start. Run ``TASK/NAME/seedK`` trains in
``RESULTS/SUITE/TASK/NAME/seedK/``, the ``lrpt train --out`` layout (``prompt/``,
``results.json``, ``checkpoint.pt``), through a child process ``python -m lrpt train --config
spec.json --resume``, where ``spec.json`` is the run's spec (:mod:`lrpt.app.spec`): the same
construction path as the command line, an interrupted run continues
from its checkpoint, and the child's own peak resident memory is measurable. When the child
succeeds, ``run.json`` (:func:`~.records.run_record`) is written beside its results; a run with a
``run.json`` is finished and a rerun skips it (it is an error if the suite changed that run's
settings since). After every finished run the suite's ``summary.json`` (:func:`~.report.summarize`),
``summary.md`` and ``summary.png`` are rewritten from all finished runs.

Learning-rate grids: an entry's ``grid`` (a table of lists, their product; or an array of
tables, one point each) lists settings to choose from, e.g. ``grid = { lr = [0.1, 0.03, 0.01]
}`` or, for a method with two rates, ``grid = [{ lr = 0.3, lowrank_lr = 5e-4 }, ...]`` (a key
is any ``lrpt train`` setting or method option). Each point trains on the entry's first seed
only, on each task, with ``evaluate_test = false`` (``TASK/NAME/grid/POINT/seedK``): the test
split is never read during selection. The point with the best validation metric (the run's
``best_validation``; the first point on a tie) is chosen per task, and the entry's seeds then
train at it and are tested as any other run. Entries with the same ``grid_group`` (the same
points) choose one point together: the one with the best mean validation over the group's
entries on that task. ``grid_from = "NAME"`` trains at the point entry ``NAME``'s grid chose on
the same task, with no grid runs of its own (e.g. a longer budget at the tuned rate). Grid runs
come before every other run of their stage; a run whose grid
is not complete waits (it is reported as waiting and retried on the next invocation). The
summaries list every point's validation score and the choice. The tested run on the grid's seed
at the chosen point trains exactly what that grid run trained (same settings but for the test
evaluation, bit for bit): when the grid run's ``checkpoint.pt`` is on disk, it is copied to the
tested run, which resumes at its last step and only evaluates (its ``run.json`` names the grid
run in ``trained_as``); without it (e.g. a fresh clone: checkpoints are not committed) the run
trains from the start and ends with the same prompt.

Per-run measurements: ``sec_per_step`` is the trainer's ``train_seconds / steps`` (optimizer
steps only, summed over resumed attempts); ``peak_rss_mb`` is the peak resident set size of the
training process (Python, torch, the frozen model, the data, the run) from ``os.wait4``'s
resource usage of that child, for the attempt that finished the run; ``artifact_bytes`` is the
size of the saved ``prompt/`` directory.

The package, one module a job: :mod:`.schema` (the suite file, its checks, its runs),
:mod:`.grid` (the grids' choices), :mod:`.records` (``run.json``), :mod:`.runner` (training the
runs in child processes), :mod:`.report` (the summary files, with :mod:`.claims` and
:mod:`.compare`) and :mod:`.command` (the command's modes and what they print).
"""

from lrpt.app.bench.suite.command import RESULTS_DIR, run_command
from lrpt.app.bench.suite.report import write_summary
from lrpt.app.bench.suite.runner import run_suite
from lrpt.app.bench.suite.schema import SUITES_DIR, Grid, Suite, SuiteRun, load_suite, suite_path

__all__ = [
    "RESULTS_DIR",
    "SUITES_DIR",
    "Grid",
    "Suite",
    "SuiteRun",
    "load_suite",
    "run_command",
    "run_suite",
    "suite_path",
    "write_summary",
]
