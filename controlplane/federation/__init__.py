"""The Federation port and its adapters: `local` (embedded default) and, in
cluster mode, `fluidos` (Solver/Reservation/Contract/Allocation CRs)."""
