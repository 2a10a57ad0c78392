"""wasmactors."""
