#!/usr/bin/env python3
"""Policy checks of the deploy/ examples, beyond what their own tools validate.

    lint.py systemd REPO SERVICE TIMER
    lint.py crontab REPO CRONTAB        (prints the job's command on stdout)
    lint.py k8s REPO CRONJOB PVC

REPO is the checkout (its domains/ and pipeline/ are read). Each prints one `lint: ...` line per
problem on stderr and exits 1 if there was any, 0 otherwise. `systemd` needs only the standard
library; `crontab` and `k8s` need the deploy venv (croniter, PyYAML).

The JSON schemas that kubernetes-validate ships carry no enums (`concurrencyPolicy: Sometimes`
validates), and `systemd-analyze verify` cannot know which exit statuses sspa-pipe uses: these
checks pin the decisions the examples document.
"""

import os
import re
import shlex
import sys
import tomllib

problems = []


def problem(msg):
    problems.append(msg)


def domain_workspace(repo, config):
    """The workspace path (relative to the project) of domain file `config`, or None."""
    path = os.path.join(repo, config)
    if not re.fullmatch(r"domains/[a-z0-9_]+\.toml", config):
        problem(f"config {config!r} is not a domains/<name>.toml path")
        return None
    if not os.path.isfile(path):
        problem(f"config {config!r} does not exist in the checkout")
        return None
    with open(path, "rb") as f:
        cfg = tomllib.load(f)
    name = cfg.get("domain", {}).get("name")
    if not name:
        problem(f"{config}: no [domain] name")
        return None
    return os.path.normpath(cfg.get("workspace", {}).get("dir", f"work/{name}"))


def under(path, parent):
    path, parent = os.path.normpath(path), os.path.normpath(parent)
    return path == parent or path.startswith(parent.rstrip("/") + "/")


def check_retrain_argv(argv, where):
    """argv after the binary: `retrain domains/<x>.toml ... --json`; returns the config."""
    if len(argv) < 2 or argv[0] != "retrain":
        problem(f"{where}: runs {' '.join(argv)!r}, not `retrain CONFIG ...`")
        return None
    if "--json" not in argv[2:]:
        problem(f"{where}: `retrain` without --json (the summary line is parsed by tools)")
    if "--force-promote" in argv:
        problem(f"{where}: a scheduled retrain must not --force-promote")
    return argv[1]


# ---------------------------------------------------------------------------------------- systemd


def parse_unit(path):
    """{section: {key: [values]}}; continuation lines joined, comments dropped."""
    sections, section, pending = {}, None, ""
    with open(path) as f:
        for raw in f:
            line = pending + raw.rstrip("\n")
            pending = ""
            if line.endswith("\\"):
                pending = line[:-1] + " "
                continue
            stripped = line.strip()
            if not stripped or stripped[0] in "#;":
                continue
            if stripped.startswith("["):
                section = stripped.strip("[]")
                sections.setdefault(section, {})
                continue
            key, _, value = stripped.partition("=")
            sections.setdefault(section, {}).setdefault(key.strip(), []).append(value.strip())
    return sections


def lint_systemd(repo, service_path, timer_path):
    svc = parse_unit(service_path).get("Service", {})
    timer_unit = parse_unit(timer_path)
    timer = timer_unit.get("Timer", {})

    def one(d, key, where):
        vals = d.get(key, [])
        if not vals:
            problem(f"{where}: no {key}=")
            return None
        return vals[-1]

    if one(svc, "Type", "service") != "oneshot":
        problem("service: Type= must be oneshot")
    success = set(" ".join(svc.get("SuccessExitStatus", [])).split())
    if "3" not in success:
        problem("service: SuccessExitStatus= must list 3 (a run that found the workspace locked is a skip)")
    if "4" in success:
        problem("service: SuccessExitStatus= lists 4, but the unit documents gate refusals as failures")
    for key, want in [("NoNewPrivileges", "yes"), ("ProtectSystem", "strict"), ("PrivateTmp", "yes")]:
        if one(svc, key, "service") != want:
            problem(f"service: {key}= must be {want}")
    nice = one(svc, "Nice", "service")
    if nice is not None and not (nice.lstrip("-").isdigit() and int(nice) > 0):
        problem(f"service: Nice={nice} does not lower the priority")
    envs = " ".join(svc.get("Environment", []))
    for var in ("SSPA_LLM_URL", "SSPA_DATA_ROOT"):
        if f"{var}=" not in envs:
            problem(f"service: no Environment={var}=...")
    if "SSPA_LLM_API_KEY" in envs:
        problem("service: the API key belongs in EnvironmentFile=, not Environment=")
    workdir = one(svc, "WorkingDirectory", "service")
    exec_start = one(svc, "ExecStart", "service")
    if exec_start and workdir:
        argv = shlex.split(exec_start.lstrip("-@:+!"))
        if os.path.basename(argv[0]) != "sspa-pipe":
            problem(f"service: ExecStart= runs {argv[0]!r}, not sspa-pipe")
        config = check_retrain_argv(argv[1:], "service ExecStart=")
        ws = config and domain_workspace(repo, config)
        if ws:
            ws_abs = os.path.join(workdir, ws)
            rw = " ".join(svc.get("ReadWritePaths", [])).split()
            if not any(under(ws_abs, p.lstrip("-+")) for p in rw):
                problem(f"service: the workspace {ws_abs} is not under ReadWritePaths= {rw}")

    if not timer.get("OnCalendar"):
        problem("timer: no OnCalendar=")
    if one(timer, "Persistent", "timer") not in ("yes", "true", "1", "on"):
        problem("timer: Persistent= must be yes (catch up a run missed while down)")
    if not timer.get("RandomizedDelaySec"):
        problem("timer: no RandomizedDelaySec=")
    unit = timer.get("Unit", [os.path.basename(timer_path).rsplit(".", 1)[0] + ".service"])[-1]
    if unit != os.path.basename(service_path):
        problem(f"timer: starts {unit}, not {os.path.basename(service_path)}")
    if "timers.target" not in " ".join(timer_unit.get("Install", {}).get("WantedBy", [])):
        problem("timer: [Install] WantedBy=timers.target missing")


# --------------------------------------------------------------------------------------- crontab

CRON_MACROS = {"@yearly", "@annually", "@monthly", "@weekly", "@daily", "@midnight", "@hourly"}


def valid_schedule(schedule, where):
    from croniter import croniter

    if schedule.startswith(("TZ=", "CRON_TZ=")):
        problem(f"{where}: time zone inside the schedule {schedule!r}")
        return
    if schedule in CRON_MACROS:
        return
    fields = schedule.split()
    if len(fields) != 5:
        problem(f"{where}: schedule {schedule!r} has {len(fields)} fields, not 5")
    elif not croniter.is_valid(schedule):
        problem(f"{where}: schedule {schedule!r} is not a valid cron expression")


def lint_crontab(repo, path):
    jobs, env = [], {}
    with open(path) as f:
        for n, raw in enumerate(f, 1):
            line = raw.strip()
            if not line or line.startswith("#"):
                continue
            m = re.fullmatch(r"([A-Za-z_][A-Za-z0-9_]*)\s*=\s*(.*)", line)
            if m:
                env[m.group(1)] = m.group(2)
                continue
            jobs.append((n, line))
    if len(jobs) != 1:
        problem(f"crontab: {len(jobs)} job lines, expected exactly 1")
        return None
    n, line = jobs[0]
    where = f"crontab:{n}"
    if line.startswith("@"):
        schedule, _, command = line.partition(" ")
    else:
        parts = line.split(None, 5)
        if len(parts) < 6:
            problem(f"{where}: not `m h dom mon dow command`")
            return None
        schedule, command = " ".join(parts[:5]), parts[5]
    valid_schedule(schedule, where)
    # cron turns an unescaped % into a newline (the rest becomes the command's stdin).
    if re.search(r"(?<!\\)%", command):
        problem(f"{where}: unescaped % in the command (cron turns it into a newline)")
    argv = shlex.split(command)
    # Allow `. /file && ` (secrets) before the wrapper.
    while len(argv) >= 3 and argv[0] == "." and argv[2] == "&&":
        argv = argv[3:]
    if not argv or not argv[0].endswith("deploy/cron/sspa-retrain"):
        problem(f"{where}: the command does not run deploy/cron/sspa-retrain")
        return None
    rest = argv[1:]
    while rest and rest[0].startswith("--log"):
        rest = rest[2:] if rest[0] == "--log" else rest[1:]
    if len(rest) < 2:
        problem(f"{where}: sspa-retrain needs PROJECT_DIR CONFIG")
        return None
    config = rest[1]
    if "--json" not in rest[2:]:
        problem(f"{where}: retrain without --json")
    domain_workspace(repo, config)
    if env.get("SHELL", "/bin/sh") != "/bin/sh":
        problem(f"crontab: SHELL={env['SHELL']}, the wrapper is POSIX sh")
    if env.get("SSPA_RETRAIN_REFUSED_EXIT", "4") not in ("0", "4"):
        problem("crontab: SSPA_RETRAIN_REFUSED_EXIT must be 0 or 4")
    if "SSPA_LLM_API_KEY" in env:
        problem("crontab: a secret (SSPA_LLM_API_KEY) in the crontab")
    print(command)


# ------------------------------------------------------------------------------------ kubernetes


def load_one(path, kind):
    import yaml

    with open(path) as f:
        docs = [d for d in yaml.safe_load_all(f) if d]
    found = [d for d in docs if isinstance(d, dict) and d.get("kind") == kind]
    if len(found) != 1:
        problem(f"{path}: {len(found)} {kind} documents, expected 1")
        return None
    return found[0]


def dig(obj, *keys):
    for k in keys:
        if isinstance(obj, dict):
            obj = obj.get(k)
        elif isinstance(obj, list) and isinstance(k, int) and k < len(obj):
            obj = obj[k]
        else:
            return None
    return obj


def lint_k8s(repo, cronjob_path, pvc_path):
    cj = load_one(cronjob_path, "CronJob")
    pvc = load_one(pvc_path, "PersistentVolumeClaim")
    if cj is None or pvc is None:
        return

    if pvc.get("apiVersion") != "v1":
        problem("pvc: apiVersion must be v1")
    if dig(pvc, "spec", "accessModes") != ["ReadWriteOnce"]:
        problem(f"pvc: accessModes {dig(pvc, 'spec', 'accessModes')}, expected [ReadWriteOnce]")
    if not dig(pvc, "spec", "resources", "requests", "storage"):
        problem("pvc: no storage request")
    claim = dig(pvc, "metadata", "name")

    if cj.get("apiVersion") != "batch/v1":
        problem("cronjob: apiVersion must be batch/v1")
    spec = cj.get("spec") or {}
    valid_schedule(str(spec.get("schedule", "")), "cronjob")
    tz = spec.get("timeZone")
    if tz is not None:
        import zoneinfo

        try:
            zoneinfo.ZoneInfo(tz)
        except (zoneinfo.ZoneInfoNotFoundError, ValueError):
            problem(f"cronjob: timeZone {tz!r} is not a known zone")
    if spec.get("concurrencyPolicy") != "Forbid":
        problem(f"cronjob: concurrencyPolicy {spec.get('concurrencyPolicy')!r}, expected Forbid")
    sds = spec.get("startingDeadlineSeconds")
    if not isinstance(sds, int) or sds < 10:
        problem(f"cronjob: startingDeadlineSeconds {sds!r}: needs an integer >= 10 "
                "(the controller checks every 10 s)")
    for key in ("successfulJobsHistoryLimit", "failedJobsHistoryLimit"):
        v = spec.get(key)
        if not isinstance(v, int) or v < 1:
            problem(f"cronjob: {key} {v!r}, expected an integer >= 1")
    job = dig(spec, "jobTemplate", "spec") or {}
    if job.get("backoffLimit") != 0:
        problem(f"cronjob: backoffLimit {job.get('backoffLimit')!r}, expected 0 (no blind retries)")
    pod = dig(job, "template", "spec") or {}
    if pod.get("restartPolicy") != "Never":
        problem(f"cronjob: restartPolicy {pod.get('restartPolicy')!r}, expected Never")
    containers = pod.get("containers") or []
    if len(containers) != 1:
        problem(f"cronjob: {len(containers)} containers, expected 1")
        return
    c = containers[0]
    argv = list(c.get("command") or []) + list(c.get("args") or [])
    if not argv or os.path.basename(str(argv[0])) != "sspa-pipe":
        problem(f"cronjob: the container runs {argv!r}, not sspa-pipe")
        return
    config = check_retrain_argv([str(a) for a in argv[1:]], "cronjob container")
    ws = config and domain_workspace(repo, config)

    env = {e.get("name"): e for e in c.get("env") or []}
    key = env.get("SSPA_LLM_API_KEY")
    if not key or not dig(key, "valueFrom", "secretKeyRef", "name") or not dig(
            key, "valueFrom", "secretKeyRef", "key"):
        problem("cronjob: SSPA_LLM_API_KEY must come from a Secret (valueFrom.secretKeyRef)")
    for name, e in env.items():
        if re.search(r"KEY|TOKEN|SECRET|PASSWORD", name or "") and "value" in e:
            problem(f"cronjob: {name} has a literal value")
    for var in ("SSPA_LLM_URL", "SSPA_DATA_ROOT"):
        if var not in env:
            problem(f"cronjob: no {var} in the container's env")
    res = c.get("resources") or {}
    if not dig(res, "requests", "cpu") or not dig(res, "requests", "memory"):
        problem("cronjob: resources.requests needs cpu and memory")
    if not dig(res, "limits", "memory"):
        problem("cronjob: resources.limits needs memory")

    volumes = {v.get("name"): v for v in pod.get("volumes") or []}
    workdir = c.get("workingDir")
    if not workdir:
        problem("cronjob: no workingDir (the project directory, where CONFIG is relative to)")
    elif ws:
        ws_abs = os.path.join(workdir, ws)
        mounts = [m for m in c.get("volumeMounts") or []
                  if under(ws_abs, m.get("mountPath", "")) and not m.get("readOnly")]
        if not mounts:
            problem(f"cronjob: the workspace {ws_abs} is under no writable volumeMount")
        else:
            # The deepest mount holding the workspace is the one that counts.
            m = max(mounts, key=lambda m: len(m["mountPath"]))
            ref = dig(volumes.get(m.get("name")), "persistentVolumeClaim", "claimName")
            if ref != claim:
                problem(f"cronjob: the workspace mount uses claim {ref!r}, pvc.yaml defines {claim!r}")


def main(argv):
    cmds = {"systemd": (lint_systemd, 3), "crontab": (lint_crontab, 2), "k8s": (lint_k8s, 3)}
    if len(argv) < 2 or argv[1] not in cmds or len(argv) - 2 != cmds[argv[1]][1]:
        print(__doc__, file=sys.stderr)
        return 2
    fn, _ = cmds[argv[1]]
    fn(*argv[2:])
    for p in problems:
        print(f"lint: {p}", file=sys.stderr)
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
