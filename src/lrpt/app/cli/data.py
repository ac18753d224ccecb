"""``lrpt data``: the built-in tasks (``list``) and one task's splits and format (``show``)."""

from __future__ import annotations

import argparse

from lrpt.app.data.tasks import TASKS, load_task, task_available


def add_arguments(parser: argparse.ArgumentParser) -> None:
    sub = parser.add_subparsers(dest="action", required=True, parser_class=type(parser))
    sub.add_parser("list", help="the built-in tasks and whether their data is installed")
    show = sub.add_parser("show", help="a task's splits, labels, template and a few examples")
    show.add_argument("task", choices=sorted(TASKS), metavar="TASK")
    show.add_argument("--examples", type=int, default=3, metavar="N")


def run(args: argparse.Namespace) -> int:
    if args.action == "list":
        width = max(len(name) for name in TASKS)
        for name, builtin in TASKS.items():
            status = "installed" if task_available(name) else "not installed"
            print(f"{name:<{width}}  {status:<13}  {builtin.description}")
        return 0
    task = load_task(args.task)
    sizes = task.sizes()
    print(f"{task.name}: " + ", ".join(f"{k} {v:,}" for k, v in sizes.items()))
    print(f"metric   {task.metric}")
    print(f"labels   {', '.join(task.labels)}")
    print(f"template {task.template!r}")
    print(f"words    {', '.join(f'{k}={v}' for k, v in task.verbalizer.items())}")
    for example in task.train[: max(args.examples, 0)]:
        print(f"  [{example.label}] {example.text}")
    return 0
