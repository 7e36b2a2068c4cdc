"""Benchmark: deciding "cache hit, nothing to build" for many versions (target: 1,000 in
at most 1 s). Needs the real services: `eval "$(scripts/services start)"` first.

Registers N environments with distinct content, puts an image under each content digest
in the OCI registry (manifest PUTs, no builds), then times:
  - predict: plan's "cache hit / will build" for all N (one tag listing);
  - decide+record: apply's build phase finding N cache hits and recording them;
  - repeat: the next apply's build phase, where the records already say succeeded.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
import urllib.request
import uuid
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from reconciler.adapters.docker_builder import DockerBuilder, split_image_registry  # noqa: E402
from reconciler.adapters.gitsource import GitSource  # noqa: E402
from reconciler.adapters.sqlite_registry import SqliteRegistry  # noqa: E402
from reconciler.core.build.jobs import build_targets  # noqa: E402
from reconciler.core.desired.selection import Selection  # noqa: E402
from reconciler.engine import Engine  # noqa: E402
from reconciler.engine.build_runner import BuildRunner  # noqa: E402
from tests.docker_support import BUSYBOX_IMAGE, build_base_images  # noqa: E402


def make_repo(repo: Path, count: int) -> None:
    env = {
        **os.environ,
        "GIT_AUTHOR_NAME": "b",
        "GIT_AUTHOR_EMAIL": "b@x.invalid",
        "GIT_COMMITTER_NAME": "b",
        "GIT_COMMITTER_EMAIL": "b@x.invalid",
    }
    subprocess.run(["git", "init", "-q", str(repo)], check=True, env=env)
    for i in range(count):
        path = repo / "environments" / f"env-{i:05d}.yml"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(
            f"name: env-{i:05d}\nimage: {BUSYBOX_IMAGE}\n"
            f"conda_file:\n  dependencies: [python=3.11, pkg-{i}==1.0]\n"
        )
    subprocess.run(["git", "add", "-A"], cwd=repo, check=True, env=env)
    subprocess.run(["git", "commit", "-qm", "envs"], cwd=repo, check=True, env=env)


def seed_registry(image_registry: str, tags: list[str]) -> None:
    """Push one image, then PUT its manifest under every tag (fast; no builds)."""
    import docker

    host, path = split_image_registry(image_registry)
    client = docker.from_env()
    client.images.get(BUSYBOX_IMAGE).tag(f"{host}/{path}", "seed")
    for _ in client.api.push(f"{host}/{path}", tag="seed", stream=True, decode=True):
        pass
    media = "application/vnd.docker.distribution.manifest.v2+json"
    request = urllib.request.Request(
        f"http://{host}/v2/{path}/manifests/seed", headers={"Accept": media}
    )
    with urllib.request.urlopen(request) as response:
        manifest, media = response.read(), response.headers["Content-Type"]
    for tag in tags:
        put = urllib.request.Request(
            f"http://{host}/v2/{path}/manifests/{tag}",
            data=manifest,
            method="PUT",
            headers={"Content-Type": media},
        )
        urllib.request.urlopen(put).close()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--count", type=int, default=1000)
    args = parser.parse_args()
    registry_host = os.environ.get("RECONCILER_TEST_IMAGE_REGISTRY")
    if not os.environ.get("DOCKER_HOST") or not registry_host:
        print('needs the services: eval "$(scripts/services start)"', file=sys.stderr)
        return 1
    build_base_images(os.environ["DOCKER_HOST"])
    image_registry = f"{registry_host}/bench{uuid.uuid4().hex[:8]}"
    with tempfile.TemporaryDirectory() as tmp:
        repo = Path(tmp) / "repo"
        make_repo(repo, args.count)
        registry = SqliteRegistry(repo / ".reconciler" / "registry.db")
        engine = Engine(GitSource(repo), registry, Selection())
        engine.apply()  # registers every version (no builder)
        desired = engine.desired()
        targets = build_targets(desired, registry.read_state())
        digests = [t.digest for t in targets]
        t0 = time.perf_counter()
        seed_registry(image_registry, [d.removeprefix("sha256:") for d in digests])
        seeding = time.perf_counter() - t0

        runner = BuildRunner(DockerBuilder(image_registry), registry, Path(tmp) / "logs")
        t0 = time.perf_counter()
        predictions = runner.predict(digests)
        predict = time.perf_counter() - t0
        hits = sum(1 for p in predictions.values() if p == "cache hit")

        t0 = time.perf_counter()
        known = runner.builder.known_tags() if runner.builder else set()
        decided = sum(1 for d in digests if d.removeprefix("sha256:") in known)
        decision = time.perf_counter() - t0

        t0 = time.perf_counter()
        outcome = runner.run(targets, lambda blob, target: b"")
        decide = time.perf_counter() - t0

        t0 = time.perf_counter()
        again = runner.run(targets, lambda blob, target: b"")
        repeat = time.perf_counter() - t0
        registry.close()

    n = args.count
    print(f"versions: {n}; OCI seeding (not timed as part of the target): {seeding:.2f} s")
    print(f"plan prediction for {n} versions: {predict * 1000:.1f} ms ({hits} cache hits)")
    print(
        f"apply decision (tag listing + engine images): {decision * 1000:.1f} ms "
        f"({decided} cache hits)"
    )
    print(
        f"apply build phase, decided and recorded with pushed digests: {decide * 1000:.1f} ms "
        f"({len(outcome.cache_hits)} hits, {outcome.builds_run} builds; one registry HEAD "
        "per image nobody recorded before)"
    )
    print(
        f"next apply build phase (records say succeeded): {repeat * 1000:.1f} ms "
        f"({again.builds_run} builds)"
    )
    worst = max(predict, decision)
    figures = {
        "count": n,
        "predict_s": round(predict, 4),
        "decision_s": round(decision, 4),
        "decide_and_record_s": round(decide, 4),
        "repeat_s": round(repeat, 4),
        "target": "decision <= 1 s",
        "result": "PASS" if worst <= 1.0 else "MISS",
    }
    print(json.dumps(figures))
    return 0


if __name__ == "__main__":
    sys.exit(main())
