"""The BaseImages port: each base image reference asked of its own registry (the OCI
distribution API, see oci.py; imported on the first lookup only)."""

from __future__ import annotations


class BaseImageRegistries:
    def resolve(self, ref: str) -> str | None:
        from reconciler.adapters.oci import resolve

        return resolve(ref)
