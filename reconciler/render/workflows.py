"""The reconcile workflow (`.github/workflows/reconcile.yml`) generated from the targets:
one job per target in gate order, each waiting for the jobs of the targets it waits for
(`needs:`) and bound to the GitHub deployment environment of the same name, so required
reviewers or a wait timer on `prod` hold its job with GitHub's own protection rules.
Without targets it is the single-job workflow."""

from __future__ import annotations

from collections.abc import Sequence

WORKFLOW_PATH = ".github/workflows/reconcile.yml"

_HEAD = """name: reconcile
on:
  push:
    branches: [main]
    paths:
      - "environments/**"
      - "reconciler.toml"
  schedule:
    - cron: "17 3 * * *"  # nightly: catches drift made outside git
  workflow_dispatch:
permissions:
  contents: read
  id-token: write  # azure/login with OpenID Connect
concurrency:
  # One reconcile at a time from this repository (an Azure ML workspace is also locked
  # across machines by a blob lease; a sqlite registry only per machine).
  group: reconcile
  cancel-in-progress: false
jobs:
"""

_STEPS = """    steps:
      - uses: actions/checkout@11d5960a326750d5838078e36cf38b85af677262 # v4.4.0
      - uses: actions/setup-python@a26af69be951a213d495a4c3e4e4022e16d87065 # v5.6.0
        with:
          python-version: "3.11"
      - name: Install
        run: pip install -e '.[azure]'
      - name: Sign in to Azure (OpenID Connect, no stored secret; see docs/azure.md)
        if: startsWith(env.RECONCILER_REGISTRY, 'azureml://')
        uses: azure/login@a457da9ea143d694b1b9c7c869ebb04ebe844ef5 # v2.3.0
        with:
          client-id: ${{ vars.AZURE_CLIENT_ID }}
          tenant-id: ${{ vars.AZURE_TENANT_ID }}
          subscription-id: ${{ vars.AZURE_SUBSCRIPTION_ID }}
      - name: Restore the registry view kept from the last run (incremental plans)
        if: startsWith(env.RECONCILER_REGISTRY, 'azureml://')
        uses: actions/cache@0057852bfaa89a56745cba8c7296529d2fc39830 # v4.3.0
        with:
          path: .reconciler/azureml
          key: reconciler-azureml-{cache}${{ github.run_id }}
          restore-keys: reconciler-azureml-{cache}
      - name: Apply and report drift
        run: scripts/ci/reconcile
      - name: Upload the drift report
        if: always()
        uses: actions/upload-artifact@ea165f8d65b6e75b540449e92b4886f43607fa02 # v4.6.2
        with:
          name: {artifact}
          path: drift-report/
"""

_SINGLE = """  reconcile:
    runs-on: ubuntu-latest
    timeout-minutes: 60
    env:
      RECONCILER_REGISTRY: ${{ vars.RECONCILER_REGISTRY || 'sqlite:///.reconciler/registry.db' }}
      RECONCILER_APPLY_FLAGS: ${{ vars.RECONCILER_APPLY_FLAGS }}
"""

_GENERATED = "# Generated from reconciler.toml by `reconciler workflows`; edit the targets there.\n"


def job_id(target: str) -> str:
    return f"reconcile-{target}"


def reconcile_workflow(targets: Sequence[tuple[str, Sequence[str], str]]) -> str:
    """``targets``: (name, the targets it waits for, its registry URL) in gate order;
    empty: one registry, read from the repository variable RECONCILER_REGISTRY."""
    if not targets:
        steps = _STEPS.replace("{artifact}", "drift-report").replace("{cache}", "")
        return _HEAD + _SINGLE + steps
    jobs = []
    for name, after, registry in targets:
        needs = ""
        if after:
            needs = "    needs: [" + ", ".join(job_id(u) for u in after) + "]\n"
        steps = (
            _STEPS.replace("{artifact}", f"drift-report-{name}")
            .replace("{cache}", f"{name}-")
            # the target's registry is in reconciler.toml: known when this is generated
            .replace("env.RECONCILER_REGISTRY", "env.RECONCILER_TARGET_REGISTRY")
        )
        jobs.append(
            f"  {job_id(name)}:\n"
            + needs
            + "    runs-on: ubuntu-latest\n"
            + "    timeout-minutes: 60\n"
            + f"    environment: {name}  # protection rules (reviewers, wait timer) hold it\n"
            + "    env:\n"
            + f"      RECONCILER_TARGET: {name}\n"
            + f'      RECONCILER_TARGET_REGISTRY: "{registry}"\n'
            + "      RECONCILER_APPLY_FLAGS: ${{ vars.RECONCILER_APPLY_FLAGS }}\n"
            + steps
        )
    return _GENERATED + _HEAD + "".join(jobs)
