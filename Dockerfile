# The reconciler's image: `reconciler serve` as a non-root user, with git.
#
# Built with no network access: the base is a Debian root file system made with
# debootstrap (scripts/base-image prints its tag), and the wheels of reconciler and of its
# dependencies come with the build context in wheels/ (`pip wheel --wheel-dir wheels
# '.[azure]'`). docs/serve.md shows the whole sequence.
ARG BASE=reconciler-base:latest

FROM ${BASE} AS build
LABEL org.reconciler.stage=build
COPY wheels/ /wheels/
RUN python3 -m venv /opt/reconciler \
 && /opt/reconciler/bin/pip install --no-index --find-links /wheels --no-cache-dir \
      --disable-pip-version-check --quiet 'reconciler[azure]' \
 && /opt/reconciler/bin/reconciler --version

FROM ${BASE}
# The repository is cloned at start (or mounted) and owned by whoever did that: git must
# not refuse it as "dubious ownership".
RUN useradd --system --uid 10001 --user-group --home-dir /home/reconciler --create-home \
      --shell /usr/sbin/nologin reconciler \
 && git config --system --add safe.directory '*' \
 && mkdir /repo && chown reconciler:reconciler /repo
COPY --from=build /opt/reconciler /opt/reconciler
ENV PATH=/opt/reconciler/bin:/usr/sbin:/usr/bin:/sbin:/bin \
    PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    HOME=/home/reconciler
USER 10001:10001
WORKDIR /repo
EXPOSE 8080
# tini reaps the git processes and passes SIGTERM on for a clean stop.
ENTRYPOINT ["/usr/bin/tini", "--", "reconciler", "serve"]
CMD ["--listen", "0.0.0.0:8080"]
