"""Multi-host graphs shared by the tests in this folder (built-in plugins only)."""

#: Three hosts of one site: a source on cam, a sampler on relay, the sink (and the manager) on base.
THREE_HOSTS = """
schnitzel: 1
name: trio
hosts:
  - {name: base, address: "${env:SZ_BASE_ADDR:-10.0.0.1}", role: manager}
  - {name: cam, address: "${env:SZ_CAM_ADDR:-10.0.0.2}"}
  - {name: relay, address: "${env:SZ_RELAY_ADDR:-10.0.0.3}"}
containers:
  - {id: sense, host: cam, restart_backoff_s: 0.2}
  - {id: mid, host: relay, restart_backoff_s: 0.2}
  - {id: store, host: base}
nodes:
  - {id: gen, plugin: synthetic_source, container: sense, params: {mode: counter, rate_hz: 20}}
  - {id: thin, plugin: sampler, container: mid, params: {mode: every_n, n: 1}}
  - {id: out, plugin: stdout_sink, container: store}
edges:
  - {from: gen.out, to: thin.in}
  - {from: thin.out, to: out.in}
"""
