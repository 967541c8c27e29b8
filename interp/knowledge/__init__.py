"""Where a fact is recalled and how to change it: causal tracing, ROME editing with its covariance
statistics, and CounterFact-style evaluation."""
