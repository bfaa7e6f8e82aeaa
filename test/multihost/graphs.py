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

#: Two sites: a robot's queue sends over Zenoh to the cloud's sink (the manager host).
ZENOH_SITES = """
schnitzel: 1
name: fleetlet
zenoh: {mode: client, router: "tcp/${env:SZ_CLOUD_ADDR:-10.0.0.1}:7447"}
hosts:
  - {name: cloud, address: "${env:SZ_CLOUD_ADDR:-10.0.0.1}", role: manager, site: cloud}
  - {name: robot, address: "${env:SZ_ROBOT_ADDR:-10.0.0.2}", site: r1}
containers:
  - {id: edge, host: robot}
  - {id: agg, host: cloud}
runtime: {delivery_stall_s: 0}
nodes:
  - id: gen
    plugin: synthetic_source
    container: edge
    params:
      mode: counter
      rate_hz: 20
      count: ${env:SZ_COUNT:-100}
  - {id: q, plugin: durable_queue, container: edge,
     params: {path: "${env:SZ_DATA:-/tmp}/q.db", lease_s: 1.0}}
  - {id: out, plugin: jsonl_sink, container: agg, params: {path: "${env:SZ_DATA:-/tmp}/out.jsonl"}}
edges:
  - {from: gen.out, to: q.in}
  - {from: q.out, to: out.in}
"""
