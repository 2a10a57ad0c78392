"""The actor layer: actor systems, mailboxes and supervision, built on
:mod:`wasmactors.runtime`. It is being built (see the project's issues); the
runtime layer below is complete and usable on its own."""

__all__: list[str] = []
