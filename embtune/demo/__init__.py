"""The demo and its dev/bench tools: the generated shop, BEIR loading and the click simulator.

Nothing in the service imports this package; the CLI (`embtune demo`, `embtune clickstream
simulate`) and the benchmarks do. It may pull in the HTTP client and torch, which is why it is
kept out of `embtune.clickstream`, whose session logic stays pure.
"""
