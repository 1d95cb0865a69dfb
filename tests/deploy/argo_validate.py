"""Checks Argo Workflows manifests against Argo's own schema, strictly.

PyPI's `hera` ships pydantic models generated from the OpenAPI schema Argo Workflows publishes
(`io.argoproj.workflow.v1alpha1.*`); a manifest is validated as a `Workflow` (types, required
fields) and must round-trip through it unchanged (a misspelt field is silently dropped by the
models, so a key missing after the round trip is reported as unknown). Then the DAG's own
references: every task names a template that exists, every dependency a task of the same DAG, no
cycles, and the entrypoint exists.

usage: argo_validate.py FILE...   (exit 1 with one line per problem)
"""

import sys

import yaml
from hera.workflows.models import Workflow


def unknown_keys(given, dumped, path):
    problems = []
    if isinstance(given, dict):
        if not isinstance(dumped, dict):
            return [f"{path}: not an object in the schema"]
        for key, value in given.items():
            if key not in dumped:
                problems.append(f"{path}.{key}: unknown field")
            else:
                problems += unknown_keys(value, dumped[key], f"{path}.{key}")
    elif isinstance(given, list) and isinstance(dumped, list):
        for i, (a, b) in enumerate(zip(given, dumped)):
            problems += unknown_keys(a, b, f"{path}[{i}]")
    return problems


def dag_problems(doc):
    spec = doc.get("spec", {})
    templates = {t.get("name"): t for t in spec.get("templates", [])}
    problems = []
    if spec.get("entrypoint") not in templates:
        problems.append(f"spec.entrypoint: no template named {spec.get('entrypoint')!r}")
    for name, template in templates.items():
        tasks = (template.get("dag") or {}).get("tasks", [])
        names = {t["name"] for t in tasks}
        needs = {t["name"]: t.get("dependencies", []) for t in tasks}
        for task in tasks:
            if task.get("template") not in templates:
                problems.append(f"template {name}: task {task['name']} names no template {task.get('template')!r}")
            for dep in task.get("dependencies", []):
                if dep not in names:
                    problems.append(f"template {name}: task {task['name']} depends on unknown task {dep!r}")
        done, active = set(), set()

        def visit(task, chain):
            if task in done or task not in needs:
                return
            if task in active:
                problems.append(f"template {name}: dependency cycle {' -> '.join(chain + [task])}")
                return
            active.add(task)
            for dep in needs[task]:
                visit(dep, chain + [task])
            active.discard(task)
            done.add(task)

        for task in needs:
            visit(task, [])
    return problems


def main(paths):
    problems = []
    for path in paths:
        with open(path) as f:
            docs = [d for d in yaml.safe_load_all(f) if d is not None]
        if not docs:
            problems.append(f"{path}: no document")
        for doc in docs:
            if doc.get("kind") != "Workflow" or doc.get("apiVersion") != "argoproj.io/v1alpha1":
                problems.append(f"{path}: not an argoproj.io/v1alpha1 Workflow")
                continue
            try:
                model = Workflow.model_validate(doc)
            except Exception as error:  # pydantic's ValidationError lists every field
                problems.append(f"{path}: {error}")
                continue
            dumped = model.model_dump(by_alias=True, exclude_unset=True, mode="json")
            problems += [f"{path}: {p}" for p in unknown_keys(doc, dumped, "")]
            problems += [f"{path}: {p}" for p in dag_problems(doc)]
    for problem in problems:
        print(problem)
    if not problems:
        print(f"valid Argo Workflow(s): {' '.join(paths)}")
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
