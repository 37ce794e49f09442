"""The Kubernetes manifests under deploy/kubernetes, checked three ways.

1. Schema: every YAML document parses (PyYAML) and validates against the Kubernetes API models of
   the official Python client (`kubernetes`, pydantic models that forbid unknown fields, require
   required ones and check types); a deliberately broken copy must be rejected, so the validation
   is known to bite.
2. Shape: Indexed Jobs, hardened non-root pods, resources, credentials only from the Secret, and
   command lines that use only flags `otsarchive <command> --help` lists.
3. Behaviour: each Job's container command is run exactly as the YAML writes it (after Kubernetes'
   `$(VAR)` expansion from the container's environment: the ConfigMap and Secret values this test
   supplies, JOB_COMPLETION_INDEX per index, the working directory as a fresh folder) against a real
   `ots-emulator`: plan, every worker index, commit, `otsarchive verify`, every restore worker index,
   and the official Tablestore SDK finds source and restored table identical (all versions). The
   CronJob's incremental runs against a table with a stream.
"""

import copy
import json
import logging
import os
import re
import select
import signal
import socket
import subprocess
import tempfile
import threading
import time
import tomllib
import uuid
from pathlib import Path

import pytest
import yaml
from kubernetes import client as k8s

logging.getLogger("tablestore").setLevel(logging.CRITICAL)
logging.getLogger("tablestore-client").setLevel(logging.CRITICAL)
import tablestore as ots  # noqa: E402
import tablestore.protobuf.table_store_pb2 as pb2  # noqa: E402
from tablestore.protocol import OTSProtocol  # noqa: E402

REPO = Path(__file__).resolve().parents[2]
DEPLOY = REPO / "deploy" / "kubernetes"
TARGET = REPO / os.environ.get("CARGO_TARGET_DIR", "target")
BIN_DIR = TARGET / "debug"
OTSARCHIVE = BIN_DIR / "otsarchive"
EMULATOR = Path(os.environ.get("OTS_EMULATOR_BIN", BIN_DIR / "ots-emulator"))

AK_ID = "deployAK"
AK_SECRET = "deploy-secret-0123456789"
INSTANCE = "deploy"

MODELS = {
    ("v1", "ConfigMap"): k8s.V1ConfigMap,
    ("v1", "Secret"): k8s.V1Secret,
    ("batch/v1", "Job"): k8s.V1Job,
    ("batch/v1", "CronJob"): k8s.V1CronJob,
}
ID_LINE = re.compile(r"^\S+/(\d{8}T\d{6}Z-[0-9a-f]+)$")


# ---------------------------------------------------------------------------------------------
# The manifests


def manifest_files():
    return sorted(DEPLOY.glob("*.yaml"))


def documents():
    out = []
    for path in manifest_files():
        with open(path) as f:
            for doc in yaml.safe_load_all(f):
                if doc is not None:
                    out.append((path.name, doc))
    return out


def doc_named(file_name, kind=None):
    docs = [d for f, d in documents() if f == file_name and (kind is None or d["kind"] == kind)]
    assert len(docs) == 1, f"{file_name}: expected one {kind or 'document'}, found {len(docs)}"
    return docs[0]


def validate(doc):
    """The client's model for the document's apiVersion and kind; raises on a schema violation."""
    model = MODELS.get((doc.get("apiVersion"), doc.get("kind")))
    if model is None:
        raise ValueError(f"no model for apiVersion {doc.get('apiVersion')!r} kind {doc.get('kind')!r}")
    return model.model_validate(doc)


def job_spec(doc):
    return doc["spec"]["jobTemplate"]["spec"] if doc["kind"] == "CronJob" else doc["spec"]


def pod_spec(doc):
    return job_spec(doc)["template"]["spec"]


def workloads():
    return [(f, d) for f, d in documents() if d["kind"] in ("Job", "CronJob")]


def the_container(doc):
    containers = pod_spec(doc)["containers"]
    assert len(containers) == 1
    return containers[0]


def config_values(path_name, kind):
    doc = doc_named(path_name, kind)
    return dict(doc.get("data") or {}) | dict(doc.get("stringData") or {})


def test_there_are_manifests():
    names = {p.name for p in manifest_files()}
    assert {"secret.example.yaml", "configmap.example.yaml", "backup-plan-job.yaml",
            "backup-workers-job.yaml", "backup-commit-job.yaml", "restore-workers-job.yaml",
            "incremental-cronjob.yaml"} <= names


@pytest.mark.parametrize("path", manifest_files(), ids=lambda p: p.name)
def test_every_document_validates_against_the_api_schema(path):
    with open(path) as f:
        docs = [d for d in yaml.safe_load_all(f) if d is not None]
    assert docs, f"{path.name} holds no document"
    for doc in docs:
        model = validate(doc)
        assert model.metadata.name, f"{path.name}: {doc['kind']} without a name"


def test_validation_rejects_broken_copies():
    job = doc_named("backup-workers-job.yaml")
    validate(job)

    def broken(change):
        b = copy.deepcopy(job)
        change(b)
        return b

    cases = {
        "container without a name": lambda d: the_container(d).pop("name"),
        "unknown field (misspelt completionMode)": lambda d: d["spec"].update(completionmode="Indexed"),
        "unknown container field": lambda d: the_container(d).update(workdir="/work"),
        "completions not an integer": lambda d: d["spec"].update(completions="three"),
        "args not a list": lambda d: the_container(d).update(args="backup --table t"),
        "job without a pod template": lambda d: d["spec"].pop("template"),
        "envFrom secretRef not an object": lambda d: the_container(d)["envFrom"].append({"secretRef": "x"}),
    }
    for what, change in cases.items():
        with pytest.raises(Exception) as info:
            validate(broken(change))
        assert "validation error" in str(info.value).lower(), f"{what}: {info.value}"
    with pytest.raises(ValueError):
        validate(dict(job, kind="Jobb"))


# ---------------------------------------------------------------------------------------------
# Shape


@pytest.mark.parametrize("name", ["backup-workers-job.yaml", "restore-workers-job.yaml"])
def test_worker_jobs_are_indexed_and_consistent(name):
    doc = doc_named(name)
    spec = doc["spec"]
    assert spec["completionMode"] == "Indexed"
    assert spec["completions"] == spec["parallelism"] == 3
    assert spec.get("backoffLimitPerIndex", 0) >= 1
    args = the_container(doc)["args"]
    worker = args[args.index("--worker") + 1]
    assert worker == f"$(JOB_COMPLETION_INDEX)/{spec['completions']}", \
        "--worker's N must equal completions"


@pytest.mark.parametrize("name,doc", workloads(), ids=[f for f, _ in workloads()])
def test_pods_are_hardened_and_configured(name, doc):
    spec = job_spec(doc)
    pod = pod_spec(doc)
    c = the_container(doc)
    # podFailurePolicy needs restartPolicy Never; every retry is then a new pod.
    assert pod["restartPolicy"] == "Never"
    assert "podFailurePolicy" in spec
    psc = pod["securityContext"]
    assert psc["runAsNonRoot"] is True and psc["runAsUser"] == 10001 and psc["runAsGroup"] == 10001
    csc = c["securityContext"]
    assert csc["readOnlyRootFilesystem"] is True
    assert csc["allowPrivilegeEscalation"] is False
    assert csc["capabilities"]["drop"] == ["ALL"]
    assert c.get("command") == ["otsarchive"], "the command is written out, not left to the image"
    # Writable places are emptyDirs: /tmp and the working directory.
    volumes = {v["name"]: v for v in pod["volumes"]}
    mounts = {m["mountPath"]: m["name"] for m in c["volumeMounts"]}
    for path in ("/tmp", c["workingDir"]):
        assert path in mounts and "emptyDir" in volumes[mounts[path]], f"{path} is not an emptyDir"
    mem = c["resources"]
    assert mem["requests"]["memory"] == "384Mi" and mem["limits"]["memory"] == "512Mi"
    # Credentials only from the Secret; settings from the ConfigMap.
    refs = [(k, v["name"]) for e in c["envFrom"] for k, v in e.items()]
    assert ("secretRef", "otsarchive-credentials") in refs
    assert ("configMapRef", "otsarchive-config") in refs
    for e in c.get("env", []):
        assert not e["name"].startswith("ALIBABA_CLOUD_ACCESS"), "credentials must come from the Secret"
    # Metrics: the flag's port is the container port named `metrics`.
    args = c["args"]
    if "--metrics-addr" in args:
        port = int(args[args.index("--metrics-addr") + 1].rsplit(":", 1)[1])
        assert {"name": "metrics", "containerPort": port, "protocol": "TCP"} in c["ports"]


def test_variables_are_all_defined():
    """Every $(VAR) in a command line is one the pod's environment defines."""
    known = set(config_values("configmap.example.yaml", "ConfigMap")) | \
        set(config_values("secret.example.yaml", "Secret")) | {"SNAPSHOT_URL", "SNAPSHOT_ID"}
    for name, doc in workloads():
        c = the_container(doc)
        indexed = job_spec(doc).get("completionMode") == "Indexed"
        for arg in c["command"] + c["args"]:
            for var in re.findall(r"\$\(([^)]*)\)", arg):
                if var == "JOB_COMPLETION_INDEX":
                    assert indexed, f"{name}: JOB_COMPLETION_INDEX outside an Indexed Job"
                else:
                    assert var in known, f"{name}: $({var}) is defined nowhere"
                if var.startswith("SNAPSHOT_"):
                    refs = [e.get("configMapRef", {}).get("name") for e in c["envFrom"]]
                    assert "otsarchive-snapshot" in refs, f"{name}: uses $({var}) without the ConfigMap"


def help_flags(command):
    out = subprocess.run([str(OTSARCHIVE), command, "--help"], capture_output=True, text=True,
                         check=True, timeout=60).stdout
    # Flags as the option list shows them: `  -x, --flag <V>` or `      --flag`.
    return set(re.findall(r"^\s+(?:-\w, )?(--[a-z][a-z0-9-]*)", out, flags=re.M))


def needs_binaries():
    for b in (OTSARCHIVE, EMULATOR):
        if not (b.is_file() and os.access(b, os.X_OK)):
            pytest.fail(f"{b} is missing: cargo build -p otsarchive -p ots-emulator")


def restore_worker_missing():
    """The restore workers' --worker is newer than the rest; None when the binary has it."""
    needs_binaries()
    if "--worker" not in help_flags("restore"):
        return "`otsarchive restore --worker` is not in this binary yet (restore --help lists no --worker)"
    return None


@pytest.mark.parametrize("name,doc", workloads(), ids=[f for f, _ in workloads()])
def test_command_lines_use_only_listed_flags(name, doc):
    needs_binaries()
    c = the_container(doc)
    argv = c["command"] + c["args"]
    sub = argv[1]
    flags = {a for a in argv[2:] if a.startswith("--")}
    missing = flags - help_flags(sub)
    if missing == {"--worker"} and sub == "restore":
        pytest.xfail(restore_worker_missing() or "restore --worker missing")
    assert not missing, f"{name}: `otsarchive {sub} --help` does not list {sorted(missing)}"


def test_dockerfile_and_dockerignore():
    df = (REPO / "Dockerfile").read_text()
    rust_version = tomllib.loads((REPO / "Cargo.toml").read_text())["workspace"]["package"]["rust-version"]
    m = re.search(r"^FROM rust:(\d+)\.(\d+)\S* AS build$", df, flags=re.M)
    assert m, "the builder is a pinned rust:1.x image"
    need = tuple(int(x) for x in rust_version.split(".")[:2])
    assert (int(m[1]), int(m[2])) >= need, f"builder rust:{m[1]}.{m[2]} < rust-version {rust_version}"
    assert "cargo build --release --locked -p otsarchive -p ots-emulator" in df
    assert re.search(r"^USER 10001", df, flags=re.M)
    assert 'ENTRYPOINT ["otsarchive"]' in df
    assert "ca-certificates" in df
    ignored = (REPO / ".dockerignore").read_text().split()
    for p in ("target/", ".venv/", ".git/"):
        assert p in ignored


def test_backup_sh_is_valid_bash():
    script = DEPLOY / "backup.sh"
    assert os.access(script, os.X_OK)
    subprocess.run(["bash", "-n", str(script)], check=True)
    text = script.read_text()
    for f in ("backup-plan-job.yaml", "backup-workers-job.yaml", "backup-commit-job.yaml",
              "otsarchive-snapshot", "SNAPSHOT_URL", "SNAPSHOT_ID"):
        assert f in text


# ---------------------------------------------------------------------------------------------
# Running the containers' commands


def expand(s, env):
    """Kubernetes' expansion of command and args: $(VAR) from the environment, $$ for a dollar,
    an unknown $(VAR) left as it is."""
    out, i = [], 0
    while i < len(s):
        if s[i] == "$" and i + 1 < len(s):
            nxt = s[i + 1]
            if nxt == "$":
                out.append("$")
                i += 2
                continue
            if nxt == "(":
                j = s.find(")", i + 2)
                if j == -1:
                    out.append(s[i:])
                    break
                name = s[i + 2:j]
                out.append(env[name] if name in env else s[i:j + 1])
                i = j + 1
                continue
            out.append(s[i:i + 2])
            i += 2
            continue
        out.append(s[i])
        i += 1
    return "".join(out)


def test_expand_follows_kubernetes():
    env = {"A": "x", "B": "y"}
    assert expand("$(A)/$(B)", env) == "x/y"
    assert expand("$$(A)", env) == "$(A)"
    assert expand("$(C)", env) == "$(C)"
    assert expand("a$b", env) == "a$b"
    assert expand("$(A", env) == "$(A"


class Cluster:
    """What the pods' environment comes from: ConfigMaps and Secrets by name."""

    def __init__(self, configmaps, secrets):
        self.configmaps = configmaps
        self.secrets = secrets


def container_env(c, cluster, index, pod_name):
    env = {}
    for src in c.get("envFrom", []):
        prefix = src.get("prefix", "")
        if "configMapRef" in src:
            ref, store = src["configMapRef"], cluster.configmaps
        else:
            ref, store = src["secretRef"], cluster.secrets
        if ref["name"] not in store:
            assert ref.get("optional"), f"{ref['name']} does not exist"
            continue
        env.update({prefix + k: v for k, v in store[ref["name"]].items()})
    if index is not None:
        env["JOB_COMPLETION_INDEX"] = str(index)   # the Indexed Job controller adds it
    for e in c.get("env", []):
        if "value" in e:
            env[e["name"]] = expand(e["value"], env)
        else:
            vf = e["valueFrom"]
            if "configMapKeyRef" in vf:
                r = vf["configMapKeyRef"]
                env[e["name"]] = cluster.configmaps[r["name"]][r["key"]]
            elif "secretKeyRef" in vf:
                r = vf["secretKeyRef"]
                env[e["name"]] = cluster.secrets[r["name"]][r["key"]]
            else:
                raise AssertionError(f"unsupported env source {vf}")
    env["HOSTNAME"] = pod_name
    return env


def run_pod(doc, cluster, index=None, timeout=180):
    """Runs the container's command as the kubelet would: expanded command + args, the container's
    environment only, the working directory a fresh empty folder. Returns the CompletedProcess."""
    c = the_container(doc)
    pod_name = f"{doc['metadata']['name']}-{index if index is not None else 0}-{uuid.uuid4().hex[:5]}"
    env = container_env(c, cluster, index, pod_name)
    argv = [expand(a, env) for a in c.get("command", []) + c.get("args", [])]
    unresolved = [a for a in argv if "$(" in a]
    assert not unresolved, f"unresolved variables in {argv}"
    with tempfile.TemporaryDirectory(prefix="pod-work-") as work:
        env["HOME"] = work
        env["PATH"] = f"{BIN_DIR}:/usr/local/bin:/usr/bin:/bin"
        p = subprocess.run(argv, env=env, cwd=work, capture_output=True, text=True, timeout=timeout)
        p.argv = argv
        p.files = sorted(os.listdir(work))
    return p


def run_job(doc, cluster):
    """Every index of an Indexed Job (one pod each, in index order), or the Job's one pod."""
    spec = job_spec(doc)
    indexes = range(spec["completions"]) if spec.get("completionMode") == "Indexed" else [None]
    results = []
    for k in indexes:
        p = run_pod(doc, cluster, k)
        assert p.returncode == 0, \
            f"{doc['metadata']['name']} index {k}: {p.argv} exited {p.returncode}\n{p.stderr[-3000:]}"
        results.append(p)
    return results


def port_is_free(port):
    with socket.socket() as s:
        try:
            s.bind(("0.0.0.0", port))
            return True
        except OSError:
            return False


# ---------------------------------------------------------------------------------------------
# A real emulator and the official SDK


@pytest.fixture(scope="module")
def emulator():
    needs_binaries()
    err = tempfile.NamedTemporaryFile(prefix="ots-emulator-", suffix=".stderr", delete=False)
    proc = subprocess.Popen([str(EMULATOR), "--listen", "127.0.0.1:0", "--instance", INSTANCE,
                             "--access-key-id", AK_ID, "--access-key-secret", AK_SECRET],
                            stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=err)
    err.close()
    try:
        buf, deadline = b"", time.monotonic() + 20
        while b"\n" not in buf:
            left = deadline - time.monotonic()
            assert left > 0 and proc.poll() is None, \
                f"ots-emulator not ready: {buf!r} {Path(err.name).read_text()[-2000:]}"
            if select.select([proc.stdout], [], [], left)[0]:
                buf += os.read(proc.stdout.fileno(), 4096)
        line = buf.split(b"\n", 1)[0].decode()
        assert line.startswith("listening on http://127.0.0.1:"), line
        def drain():   # later output must never block the emulator on a full pipe
            try:
                while os.read(proc.stdout.fileno(), 65536):
                    pass
            except OSError:
                pass

        threading.Thread(target=drain, daemon=True).start()
        yield line[len("listening on "):]
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        os.unlink(err.name)


@pytest.fixture(scope="module")
def sdk(emulator):
    return ots.OTSClient(emulator, AK_ID, AK_SECRET, INSTANCE, retry_policy=ots.NoRetryPolicy(),
                         socket_timeout=60)


def sdk_call(client, action, request, response_cls):
    """A pb2 request the SDK has no method for (tables with a stream), sent with its transport."""
    registered = action in OTSProtocol.api_list
    if not registered:
        OTSProtocol.api_list.append(action)
    enc, dec = client.protocol.encoder.api_encode_map, client.protocol.decoder.api_decode_map
    old = (enc.get(action), dec.get(action))

    def decode(body, request_id):
        msg = response_cls()
        msg.ParseFromString(body)
        return msg, msg

    enc[action], dec[action] = (lambda proto: proto), decode
    try:
        return client._request_helper(action, request)
    finally:
        for m, o in zip((enc, dec), old):
            if o is None:
                del m[action]
            else:
                m[action] = o
        if not registered:
            OTSProtocol.api_list.remove(action)


PK = [("user_id", "STRING"), ("seq", "INTEGER")]


def create_table(sdk, name, stream=False):
    if not stream:
        sdk.create_table(ots.TableMeta(name, PK), ots.TableOptions(time_to_live=-1, max_version=3),
                         ots.ReservedThroughput(ots.CapacityUnit(0, 0)))
        return
    req = pb2.CreateTableRequest()
    req.table_meta.table_name = name
    for n, t in PK:
        pk = req.table_meta.primary_key.add()
        pk.name, pk.type = n, (pb2.STRING if t == "STRING" else pb2.INTEGER)
    req.reserved_throughput.capacity_unit.read = 0
    req.reserved_throughput.capacity_unit.write = 0
    req.table_options.time_to_live = -1
    req.table_options.max_versions = 3
    req.table_options.deviation_cell_version_in_sec = 86400
    req.stream_spec.enable_stream = True
    req.stream_spec.expiration_time = 24
    sdk_call(sdk, "CreateTable", req, pb2.CreateTableResponse)


def load(sdk, table, rows=300):
    now = int(time.time() * 1000) - 10_000
    for first in range(0, rows, 100):
        items = []
        for i in range(first, min(first + 100, rows)):
            cells = [("age", 20 + i % 50), ("city", ["Hangzhou", "Beijing", "Xi'an"][i % 3]),
                     ("score", i / 7.0), ("vip", i % 2 == 0),
                     ("status", "new", now - 60_000), ("status", "paid", now)]
            if i % 10 == 0:
                cells.append(("coupon", bytearray(b"\x01\x02" * (i % 5 + 1))))
            items.append(ots.PutRowItem(ots.Row([("user_id", "u%03d" % (i // 10)), ("seq", i)], cells),
                                        ots.Condition(ots.RowExistenceExpectation.IGNORE)))
        req = ots.BatchWriteRowRequest()
        req.add(ots.TableInBatchWriteRowItem(table, items))
        assert sdk.batch_write_row(req).is_all_succeed()


def scan(sdk, table):
    """Every row, every version: {pk: sorted [(column, value, timestamp)]}."""
    out, start = {}, [(n, ots.INF_MIN) for n, _ in PK]
    end = [(n, ots.INF_MAX) for n, _ in PK]
    while start:
        _, start, rows, _ = sdk.get_range(table, ots.Direction.FORWARD, start, end, max_version=100)
        for r in rows:
            key = tuple(v for _, v in r.primary_key)
            out[key] = sorted((c[0], bytes(c[1]) if isinstance(c[1], bytearray) else c[1], c[2])
                              for c in r.attribute_columns)
    return out


def last_url(stdout):
    lines = stdout.strip().splitlines()
    assert lines, "no output on stdout"
    m = ID_LINE.match(lines[-1])
    assert m, f"the last stdout line is not a snapshot URL: {lines[-1]!r}"
    return lines[-1], m[1]


def otsarchive(*args, env=None):
    return subprocess.run([str(OTSARCHIVE), *args], capture_output=True, text=True, timeout=180,
                          env=env, check=False)


def test_manifests_run_plan_workers_commit_restore(emulator, sdk, tmp_path):
    assert port_is_free(9464), "port 9464 (the manifests' --metrics-addr) is in use on this machine"
    source, target = "orders_" + uuid.uuid4().hex[:8], "restored_" + uuid.uuid4().hex[:8]
    create_table(sdk, source)
    load(sdk, source)

    config = config_values("configmap.example.yaml", "ConfigMap")
    secret = config_values("secret.example.yaml", "Secret")
    test_config = {"OTSARCHIVE_ENDPOINT": emulator, "OTSARCHIVE_INSTANCE": INSTANCE,
                   "OTSARCHIVE_TABLE": source, "OTSARCHIVE_DEST": str(tmp_path / "backups"),
                   "ALIBABA_CLOUD_OSS_REGION": "cn-hangzhou", "OTSARCHIVE_RESTORE_TABLE": target}
    test_secret = {"ALIBABA_CLOUD_ACCESS_KEY_ID": AK_ID, "ALIBABA_CLOUD_ACCESS_KEY_SECRET": AK_SECRET,
                   "ALIBABA_CLOUD_SECURITY_TOKEN": ""}
    # The test supplies exactly the keys the examples define.
    assert set(test_config) == set(config) and set(test_secret) == set(secret)
    cluster = Cluster({"otsarchive-config": test_config}, {"otsarchive-credentials": test_secret})

    # 1. The plan; backup.sh's job: the URL from the log into the ConfigMap otsarchive-snapshot.
    (plan,) = run_job(doc_named("backup-plan-job.yaml"), cluster)
    url, snap_id = last_url(plan.stdout)
    assert url == f"{test_config['OTSARCHIVE_DEST']}/{snap_id}"
    cluster.configmaps["otsarchive-snapshot"] = {"SNAPSHOT_URL": url, "SNAPSHOT_ID": snap_id}
    # backup.sh's own filter finds it in the pod's log (stdout and stderr together).
    pattern = re.search(r"grep -E '([^']+)'", (DEPLOY / "backup.sh").read_text())[1]
    found = subprocess.run(f"grep -E '{pattern}' | tail -n 1", shell=True, text=True, check=True,
                           input=plan.stderr + plan.stdout + plan.stderr, capture_output=True).stdout
    assert found.strip() == url

    # 2. Every worker index; 3. the commit.
    workers = run_job(doc_named("backup-workers-job.yaml"), cluster)
    assert any("1 split scanned" in w.stderr or "of its 1 split" in w.stderr for w in workers), \
        [w.stderr for w in workers]
    for k, w in enumerate(workers):
        assert f"worker {k}/3" in w.stderr
    (commit,) = run_job(doc_named("backup-commit-job.yaml"), cluster)
    assert f"committed {snap_id}" in commit.stderr + commit.stdout

    env = {**cluster.secrets["otsarchive-credentials"], **test_config, "PATH": os.environ["PATH"],
           "HOME": str(tmp_path)}
    v = otsarchive("verify", url, env=env)
    assert v.returncode == 0 and ": OK," in v.stdout, v.stdout + v.stderr
    s = otsarchive("status", url, env=env)
    assert s.returncode == 0 and "committed" in s.stdout, s.stdout + s.stderr

    # A worker started again after the commit has nothing to do and exits 0.
    again = run_pod(doc_named("backup-workers-job.yaml"), cluster, 1)
    assert again.returncode == 0, again.stderr

    # 4. The restore workers, every index, into a table the first of them creates.
    reason = restore_worker_missing()
    if reason:
        pytest.xfail(reason)
    restores = run_job(doc_named("restore-workers-job.yaml"), cluster)
    assert sum("rows written" in r.stderr for r in restores) >= 1, [r.stderr for r in restores]

    expected = scan(sdk, source)
    assert len(expected) == 300 and sum(len(v) for v in expected.values()) == 300 * 6 + 30
    assert scan(sdk, target) == expected


def test_cronjob_takes_an_incremental(emulator, sdk, tmp_path):
    assert port_is_free(9464), "port 9464 (the manifests' --metrics-addr) is in use on this machine"
    source = "streamed_" + uuid.uuid4().hex[:8]
    create_table(sdk, source, stream=True)
    load(sdk, source, rows=200)
    dest = str(tmp_path / "backups")
    test_config = {"OTSARCHIVE_ENDPOINT": emulator, "OTSARCHIVE_INSTANCE": INSTANCE,
                   "OTSARCHIVE_TABLE": source, "OTSARCHIVE_DEST": dest,
                   "ALIBABA_CLOUD_OSS_REGION": "cn-hangzhou", "OTSARCHIVE_RESTORE_TABLE": "unused"}
    secret = {"ALIBABA_CLOUD_ACCESS_KEY_ID": AK_ID, "ALIBABA_CLOUD_ACCESS_KEY_SECRET": AK_SECRET,
              "ALIBABA_CLOUD_SECURITY_TOKEN": ""}
    cluster = Cluster({"otsarchive-config": test_config}, {"otsarchive-credentials": secret})

    # The chain's full snapshot, taken by the plan, worker and commit Jobs.
    (plan,) = run_job(doc_named("backup-plan-job.yaml"), cluster)
    full_url, full_id = last_url(plan.stdout)
    cluster.configmaps["otsarchive-snapshot"] = {"SNAPSHOT_URL": full_url, "SNAPSHOT_ID": full_id}
    run_job(doc_named("backup-workers-job.yaml"), cluster)
    run_job(doc_named("backup-commit-job.yaml"), cluster)

    # A day's changes: a put, an update, a delete.
    sdk.put_row(source, ots.Row([("user_id", "new"), ("seq", 1000)], [("city", "Shenzhen")]),
                ots.Condition(ots.RowExistenceExpectation.IGNORE))
    sdk.update_row(source, ots.Row([("user_id", "u000"), ("seq", 1)], {"put": [("age", 99)]}),
                   ots.Condition(ots.RowExistenceExpectation.IGNORE))
    sdk.delete_row(source, ots.Row([("user_id", "u000"), ("seq", 2)]),
                   ots.Condition(ots.RowExistenceExpectation.IGNORE))

    cron = doc_named("incremental-cronjob.yaml")
    assert cron["spec"]["concurrencyPolicy"] == "Forbid"
    (inc,) = run_job(cron, cluster)
    inc_url, inc_id = last_url(inc.stdout)
    assert inc_id != full_id

    env = {**secret, **test_config, "PATH": os.environ["PATH"], "HOME": str(tmp_path)}
    listing = otsarchive("ls", dest, "--json", env=env)
    assert listing.returncode == 0, listing.stderr
    snaps = {s.get("id") or s.get("snapshot_id"): s for s in json.loads(listing.stdout)}
    assert snaps[inc_id]["parent"] in (full_id, full_url), snaps[inc_id]
    assert sum(v for v in snaps[inc_id]["changes"].values() if isinstance(v, int)) >= 3
    v = otsarchive("verify", inc_url, env=env)
    assert v.returncode == 0, v.stdout + v.stderr

    # The chain restores (one process: a replay of changes is not shared out) to the table as it is.
    copy_table = "chain_" + uuid.uuid4().hex[:8]
    r = otsarchive("restore", "--from", inc_url, "--table", copy_table, "--create-table", env=env)
    assert r.returncode == 0, r.stderr
    assert scan(sdk, copy_table) == scan(sdk, source)
