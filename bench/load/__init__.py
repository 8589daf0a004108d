"""The load benchmark (`make bench BENCH=load`): the platform in its production shape, a
realistic tenant, and load from another process; see bench.load.harness."""
