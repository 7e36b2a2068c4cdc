"""A local emulator of the Azure ML environment asset REST API.

It serves, over HTTPS on loopback, the calls the real ``azure-ai-ml`` SDK makes for
environments (containers, versions, listing, archive and restore), for the workspace
lookups and datastore credentials an upload needs, and for the blob uploads of a local
build context. Environments are kept in the embedded SQLite registry, so the service's
rules (immutable versions, nothing deleted, archive semantics) are the same code.
"""
