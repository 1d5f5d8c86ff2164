'use strict';
/*
 * Simulated Envoys for the convergence benchmark: many ADS streams in one Node.js process.
 *
 * The default simulator of bench.convergence (`--simulator node`); bench/ads_clients.py is the
 * same instrument in Python (`--simulator python`).  Both share the machine with the server,
 * and this one costs about half the CPU per pushed response (@grpc/grpc-js, raw bytes, the
 * few protobuf messages it needs written by hand below), so it takes less from the server it
 * measures.  Real Envoys are C++ and would not run on the control plane's cores at all.
 *
 * Each simulated proxy opens its own gRPC channel (its own TCP connection, as a real Envoy
 * has: `grpc.use_local_subchannel_pool`) and one StreamAggregatedResources stream with node
 * id `mesh/<mesh>/virtualNode/c<i>` and the node metadata the meshplane bootstrap writes.  It
 * behaves like Envoy's state-of-the-world ADS client:
 *
 * - requests CDS (wildcard) with the node; after the first CDS response, LDS (wildcard);
 * - on a CDS response, subscribes EDS to the ClusterLoadAssignments of its EDS clusters; on an
 *   LDS response, RDS to the route configurations its HTTP connection managers name (a
 *   request echoing the type's last version and nonce with the new names), then ACKs;
 * - ACKs every response: version_info and response_nonce echoed, same names.
 *
 * It never NACKs.  What a response references is parsed once per version (versions are
 * content hashes, so equal versions mean equal content).
 *
 * Driven by bench.convergence over stdin/stdout, one JSON object a line (the protocol of
 * bench/ads_clients.py):
 *
 * - {"cmd": "connect", "start": i, "count": n, "burst": b}: open streams c<i>..c<i+n-1>, at
 *   most b of them connecting (not yet synced) at a time; answers {"seconds", "proxies"} when
 *   every stream has ACKed CDS, LDS and RDS and nothing arrived for a short quiet time;
 * - {"cmd": "converge", "t0": <time.monotonic()>}: answers {"acks": [...]} when every stream
 *   has ACKed a response received after t0 and nothing arrived for the quiet time, with each
 *   stream's last ACK time minus t0 (CLOCK_MONOTONIC, shared by the processes of one machine:
 *   process.hrtime is CLOCK_MONOTONIC on Linux);
 * - {"cmd": "close"}: cancel every stream, close the channels, exit.
 * Failed streams and timeouts answer {"error": "..."}.
 *
 * Not part of the test suite (tests/test_bench_ads_clients.py checks what it sends).  The
 * file-descriptor limit is inherited: bench.convergence raises its own before starting it.
 *
 *     node bench/ads_clients.js --target 127.0.0.1:18000 --mesh bench
 */

const readline = require('node:readline');
const grpc = require('@grpc/grpc-js');

const CLUSTER = 'type.googleapis.com/envoy.config.cluster.v3.Cluster';
const ENDPOINT = 'type.googleapis.com/envoy.config.endpoint.v3.ClusterLoadAssignment';
const LISTENER = 'type.googleapis.com/envoy.config.listener.v3.Listener';
const ROUTE = 'type.googleapis.com/envoy.config.route.v3.RouteConfiguration';
const HCM =
  'type.googleapis.com/envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager';
const METHOD = '/envoy.service.discovery.v3.AggregatedDiscoveryService/StreamAggregatedResources';
const EDS_TYPE = 3; // envoy.config.cluster.v3.Cluster.DiscoveryType.EDS
const QUIET = 0.5;
const TICK_MS = 50;
// the wire is the same with or without these: no channelz bookkeeping, no retry buffering
// (there is no retry policy), which only cost the simulator CPU
const CHANNEL_OPTIONS = {
  'grpc.use_local_subchannel_pool': 1,
  'grpc.enable_channelz': 0,
  'grpc.enable_retries': 0,
};
const identity = (bytes) => bytes;

function monotonic() {
  return Number(process.hrtime.bigint()) / 1e9;
}

// --- protobuf wire format: the few messages the simulator writes and reads ---------------

function varint(value) {
  const out = [];
  while (value > 0x7f) {
    out.push((value & 0x7f) | 0x80);
    value = Math.floor(value / 128);
  }
  out.push(value);
  return Buffer.from(out);
}

/** One length-delimited field (string, bytes or message): tag, length, payload. */
function field(number, payload) {
  const bytes = typeof payload === 'string' ? Buffer.from(payload, 'utf8') : payload;
  return Buffer.concat([varint((number << 3) | 2), varint(bytes.length), bytes]);
}

function varintField(number, value) {
  return Buffer.concat([varint(number << 3), varint(value)]);
}

function doubleField(number, value) {
  const bytes = Buffer.alloc(8);
  bytes.writeDoubleLE(value);
  return Buffer.concat([varint((number << 3) | 1), bytes]);
}

/** google.protobuf.Value from a JSON-like value (Struct.fields map entries in key order). */
function value(item) {
  if (item === null) return varintField(1, 0); // null_value: NULL_VALUE
  if (typeof item === 'number') return doubleField(2, item);
  if (typeof item === 'string') return field(3, item);
  if (typeof item === 'boolean') return varintField(4, item ? 1 : 0);
  return field(5, struct(item));
}

function struct(object) {
  return Buffer.concat(
    Object.entries(object).map(([key, item]) =>
      field(1, Buffer.concat([field(1, key), field(2, value(item))])),
    ),
  );
}

/** envoy.config.core.v3.Node as the meshplane bootstrap writes it, for proxy c<index>. */
function node(nodeId, index) {
  const address = `127.${1 + Math.floor(index / 62500)}.${Math.floor(index / 250) % 250}.${(index % 250) + 2}`;
  const metadata = struct({
    meshplane: { workload_address: address, app_port: null, egress_port: 15001, resource: nodeId },
  });
  const semantic = Buffer.concat([varintField(1, 1), varintField(2, 40)]); // 1.40
  return Buffer.concat([
    field(1, nodeId),
    field(2, nodeId),
    field(3, metadata),
    field(6, 'envoy'),
    field(8, field(1, semantic)), // user_agent_build_version.version
  ]);
}

const TYPE_FIELDS = new Map();
function typeField(typeUrl) {
  let bytes = TYPE_FIELDS.get(typeUrl);
  if (bytes === undefined) {
    bytes = field(4, typeUrl);
    TYPE_FIELDS.set(typeUrl, bytes);
  }
  return bytes;
}

/** envoy.service.discovery.v3.DiscoveryRequest, fields in number order as protobuf writes
 * them; `names` is a Names (its resource_names fields encoded once). */
function discoveryRequest(version, nodeBytes, names, typeUrl, nonce) {
  const parts = [];
  if (version) parts.push(field(1, version));
  if (nodeBytes) parts.push(field(2, nodeBytes));
  if (names.bytes.length) parts.push(names.bytes);
  parts.push(typeField(typeUrl));
  if (nonce) parts.push(field(5, nonce));
  return Buffer.concat(parts);
}

/** Calls visit(number, wireType, start, end) for each field of buf[start:end]: for a
 * varint, start is its value and end the offset after it. */
function fields(buf, start, end, visit) {
  let at = start;
  while (at < end) {
    let tag = 0;
    let shift = 0;
    let byte;
    do {
      if (at >= end) throw new Error('truncated tag');
      byte = buf[at++];
      tag += (byte & 0x7f) * 2 ** shift;
      shift += 7;
    } while (byte & 0x80);
    const number = Math.floor(tag / 8);
    const wire = tag & 7;
    if (wire === 0 || wire === 2) {
      let n = 0;
      shift = 0;
      do {
        if (at >= end || shift > 63) throw new Error('truncated varint');
        byte = buf[at++];
        n += (byte & 0x7f) * 2 ** shift;
        shift += 7;
      } while (byte & 0x80);
      if (wire === 0) {
        visit(number, 0, n, at);
      } else {
        if (at + n > end) throw new Error('truncated field');
        visit(number, 2, at, at + n);
        at += n;
      }
    } else if (wire === 1) {
      at += 8;
    } else if (wire === 5) {
      at += 4;
    } else {
      throw new Error(`unsupported wire type ${wire}`);
    }
  }
  if (at > end) throw new Error('truncated field');
}

/** The Any at buf[start:end] if it holds `typeUrl`: [start, end] of its value, else null. */
function unpack(buf, start, end, typeUrl) {
  let url = '';
  let found = null;
  fields(buf, start, end, (number, wire, s, e) => {
    if (wire !== 2) return;
    if (number === 1) url = buf.toString('utf8', s, e);
    else if (number === 2) found = [s, e];
  });
  if (url !== typeUrl) return null;
  return found || [start, start];
}

/** Sorted resource names with their DiscoveryRequest.resource_names fields encoded once. */
class Names {
  constructor(list) {
    this.list = list;
    this.bytes = Buffer.concat(list.map((name) => field(3, name)));
  }

  equals(other) {
    if (this === other) return true;
    if (this.list.length !== other.list.length) return false;
    return this.list.every((name, i) => name === other.list[i]);
  }
}
const NO_NAMES = new Names([]);

function clusterEdsName(buf, start, end) {
  let name = '';
  let type = 0;
  let serviceName = '';
  fields(buf, start, end, (number, wire, s, e) => {
    if (number === 1 && wire === 2) name = buf.toString('utf8', s, e);
    else if (number === 2 && wire === 0) type = s;
    else if (number === 38) type = 0; // cluster_type: the other member of the oneof
    else if (number === 3 && wire === 2) {
      fields(buf, s, e, (n, w, s2, e2) => {
        if (n === 2 && w === 2) serviceName = buf.toString('utf8', s2, e2);
      });
    }
  });
  return type === EDS_TYPE ? serviceName || name : null;
}

function listenerRouteNames(buf, start, end, found) {
  fields(buf, start, end, (number, wire, s, e) => {
    if (number !== 3 || wire !== 2) return; // filter_chains
    fields(buf, s, e, (n, w, s2, e2) => {
      if (n !== 3 || w !== 2) return; // filters
      fields(buf, s2, e2, (n3, w3, s3, e3) => {
        if (n3 !== 4 || w3 !== 2) return; // typed_config
        const manager = unpack(buf, s3, e3, HCM);
        if (manager === null) return;
        let rds = null;
        fields(buf, manager[0], manager[1], (n4, w4, s4, e4) => {
          if (n4 === 3 && w4 === 2) {
            rds = rds || '';
            fields(buf, s4, e4, (n5, w5, s5, e5) => {
              if (n5 === 2 && w5 === 2) rds = buf.toString('utf8', s5, e5);
            });
          } else if (n4 === 4 || n4 === 31) {
            rds = null; // route_config / scoped_routes: the other members of the oneof
          }
        });
        if (rds !== null) found.add(rds);
      });
    });
  });
}

const CDS_NAMES = new Map();
const LDS_NAMES = new Map();

/** EDS service names of the clusters of a CDS response (parsed once per version). */
function edsNames(buf, response) {
  let names = CDS_NAMES.get(response.version);
  if (names === undefined) {
    const found = [];
    for (const [s, e] of response.resources) {
      const cluster = unpack(buf, s, e, CLUSTER);
      const name = cluster === null ? null : clusterEdsName(buf, cluster[0], cluster[1]);
      if (name !== null) found.push(name);
    }
    names = new Names(found.sort());
    CDS_NAMES.set(response.version, names);
  }
  return names;
}

/** Route configuration names of the listeners of an LDS response (parsed once per version). */
function rdsNames(buf, response) {
  let names = LDS_NAMES.get(response.version);
  if (names === undefined) {
    const found = new Set();
    for (const [s, e] of response.resources) {
      const listener = unpack(buf, s, e, LISTENER);
      if (listener !== null) listenerRouteNames(buf, listener[0], listener[1], found);
    }
    names = new Names([...found].sort());
    LDS_NAMES.set(response.version, names);
  }
  return names;
}

/** version_info, type_url, nonce and the resources' [start, end] of a DiscoveryResponse. */
function discoveryResponse(buf) {
  const response = { version: '', typeUrl: '', nonce: '', resources: [] };
  fields(buf, 0, buf.length, (number, wire, s, e) => {
    if (wire !== 2) return;
    if (number === 1) response.version = buf.toString('utf8', s, e);
    else if (number === 2) response.resources.push([s, e]);
    else if (number === 4) response.typeUrl = buf.toString('utf8', s, e);
    else if (number === 5) response.nonce = buf.toString('utf8', s, e);
  });
  return response;
}

// --- the proxies ------------------------------------------------------------------------

/** One simulated Envoy: a channel, an ADS stream and its per-type state. */
class Proxy {
  constructor(fleet, index) {
    this.fleet = fleet;
    this.index = index;
    this.nodeId = `mesh/${fleet.mesh}/virtualNode/c${index}`;
    this.names = {};
    this.versions = {};
    this.nonces = {};
    this.ackedTypes = new Set();
    this.synced = false;
    this.opening = false;
    this.lastAck = 0;
    this.converged = -1; // the fleet's converge generation this proxy last counted for
    this.acks = 0;
    this.error = null;
    this.closing = false;
    this.client = null;
    this.call = null;
  }

  start() {
    this.client = new grpc.Client(
      this.fleet.target,
      grpc.credentials.createInsecure(),
      CHANNEL_OPTIONS,
    );
    const call = this.client.makeBidiStreamRequest(METHOD, identity, identity, new grpc.Metadata());
    this.call = call;
    call.on('data', (buf) => this.onResponse(buf));
    call.on('error', (error) => {
      if (!this.closing) {
        const name = grpc.status[error.code] || String(error.code);
        this.fail(`${name}: ${error.details} (${error.message})`);
      }
    });
    call.on('status', (status) => {
      if (!this.closing && status.code === grpc.status.OK) this.fail('stream ended');
    });
    call.write(
      discoveryRequest('', node(this.nodeId, this.index), NO_NAMES, CLUSTER, ''),
    );
  }

  request(typeUrl) {
    return discoveryRequest(
      this.versions[typeUrl] || '',
      null,
      this.names[typeUrl] || NO_NAMES,
      typeUrl,
      this.nonces[typeUrl] || '',
    );
  }

  onResponse(buf) {
    const fleet = this.fleet;
    fleet.lastResponse = monotonic();
    let response;
    try {
      response = discoveryResponse(buf);
    } catch (error) {
      this.fail(`malformed DiscoveryResponse: ${error.message}`);
      this.call.cancel();
      return;
    }
    const typeUrl = response.typeUrl;
    const firstCds = typeUrl === CLUSTER && !(CLUSTER in this.versions);
    let followType = null;
    let followNames = null;
    try {
      if (typeUrl === CLUSTER) {
        followType = ENDPOINT;
        followNames = edsNames(buf, response);
      } else if (typeUrl === LISTENER) {
        followType = ROUTE;
        followNames = rdsNames(buf, response);
      }
    } catch (error) {
      this.fail(`malformed resource in ${typeUrl} ${response.version}: ${error.message}`);
      this.call.cancel();
      return;
    }
    if (followType !== null && !followNames.equals(this.names[followType] || NO_NAMES)) {
      this.names[followType] = followNames;
      this.call.write(this.request(followType));
    }
    this.versions[typeUrl] = response.version;
    this.nonces[typeUrl] = response.nonce;
    this.call.write(this.request(typeUrl)); // the ACK
    this.ackedTypes.add(typeUrl);
    this.acks += 1;
    this.lastAck = monotonic();
    if (this.lastAck >= fleet.t0 && this.converged !== fleet.generation) {
      this.converged = fleet.generation;
      fleet.convergedCount += 1;
    }
    if (!this.synced && this.ackedTypes.has(ROUTE) && this.ackedTypes.has(LISTENER)) {
      if (this.ackedTypes.has(CLUSTER)) {
        this.synced = true;
        fleet.syncedCount += 1;
        fleet.opened(this);
      }
    }
    if (firstCds) this.call.write(this.request(LISTENER));
  }

  fail(message) {
    if (this.error !== null) return;
    this.error = message;
    this.fleet.failed.push(this);
    this.fleet.opened(this);
  }

  close() {
    this.closing = true;
    if (this.call !== null) this.call.cancel();
    if (this.client !== null) this.client.close();
  }
}

class Fleet {
  constructor(target, mesh) {
    this.target = target;
    this.mesh = mesh;
    this.proxies = [];
    this.failed = [];
    this.syncedCount = 0;
    this.lastResponse = 0;
    // converge: proxies whose last ACK is at or after t0 (counted as they ACK)
    this.t0 = Infinity;
    this.generation = 0;
    this.convergedCount = 0;
    // connect: proxies started and neither synced nor failed, and those not started yet
    this.opening = 0;
    this.pending = [];
    this.pendingAt = 0;
    this.burst = 1;
    this.pumping = false;
  }

  opened(proxy) {
    if (!proxy.opening) return;
    proxy.opening = false;
    this.opening -= 1;
    if (this.pendingAt < this.pending.length && !this.pumping) {
      this.pumping = true;
      setImmediate(() => this.pump());
    }
  }

  pump() {
    this.pumping = false;
    while (this.opening < this.burst && this.pendingAt < this.pending.length) {
      const proxy = this.pending[this.pendingAt++];
      proxy.opening = true;
      this.opening += 1;
      proxy.start();
    }
  }

  /** Opens streams, at most `burst` of them not yet synced at any time. */
  async connect(start, count, burst, timeout) {
    const began = monotonic();
    const fresh = [];
    for (let i = start; i < start + count; i++) fresh.push(new Proxy(this, i));
    this.proxies.push(...fresh);
    this.pending = fresh;
    this.pendingAt = 0;
    this.burst = burst;
    this.pump();
    try {
      await this.until(() => {
        if (this.pendingAt >= this.pending.length) return true;
        if (monotonic() - began > timeout) {
          throw new TimeoutError(`${this.opening} streams did not sync while connecting`);
        }
        return false;
      });
    } finally {
      this.pending = [];
      this.pendingAt = 0;
    }
    await this.settled(() => this.syncedCount, began, timeout);
    let done = 0;
    for (const proxy of fresh) done = Math.max(done, proxy.lastAck);
    return { seconds: done - began, proxies: this.proxies.length };
  }

  async converge(t0, timeout) {
    this.generation += 1;
    this.t0 = t0;
    let count = 0;
    for (const proxy of this.proxies) {
      if (proxy.lastAck >= t0) {
        proxy.converged = this.generation;
        count += 1;
      }
    }
    this.convergedCount = count;
    try {
      await this.settled(() => this.convergedCount, t0, timeout);
    } finally {
      this.t0 = Infinity;
    }
    return { acks: this.proxies.map((proxy) => proxy.lastAck - t0) };
  }

  /** Resolves when every proxy is done (`doneCount()` of them) and nothing arrived for the
   * quiet time; throws when a stream failed or at the deadline (`since + timeout`). */
  settled(doneCount, since, timeout) {
    const deadline = since + timeout;
    return this.until(() => {
      const now = monotonic();
      if (this.failed.length) {
        const first = this.failed.reduce((a, b) => (b.index < a.index ? b : a));
        throw new RuntimeError(
          `${this.failed.length} streams failed, e.g. ${first.nodeId}: ${first.error}`,
        );
      }
      const total = this.proxies.length;
      if (now > deadline) {
        throw new TimeoutError(`${total - doneCount()} of ${total} proxies not done`);
      }
      return doneCount() >= total && now - this.lastResponse >= QUIET;
    });
  }

  /** Checks `ready()` now and every TICK_MS (O(1): counters, no scan of the proxies). */
  until(ready) {
    return new Promise((resolve, reject) => {
      const check = () => {
        let done;
        try {
          done = ready();
        } catch (error) {
          clearInterval(timer);
          reject(error);
          return;
        }
        if (done) {
          clearInterval(timer);
          resolve();
        }
      };
      const timer = setInterval(check, TICK_MS);
      check();
    });
  }

  close() {
    for (const proxy of this.proxies) proxy.close();
  }
}

class RuntimeError extends Error {}
class TimeoutError extends Error {}

// --- the driver's protocol --------------------------------------------------------------

async function answer(fleet, line) {
  let command;
  try {
    command = JSON.parse(line);
  } catch (error) {
    return { error: `not a JSON command: ${error.message}` };
  }
  if (command === null || typeof command !== 'object' || Array.isArray(command)) {
    return { error: 'not a JSON command: a command is an object' };
  }
  const numbers = { connect: ['start', 'count'], converge: ['t0'] }[command.cmd] || [];
  const wrong = numbers.filter((key) => typeof command[key] !== 'number');
  if (wrong.length) {
    return {
      error: `${command.cmd} needs numbers ${numbers.join(', ')} (wrong: ${wrong.join(', ')})`,
    };
  }
  try {
    if (command.cmd === 'connect') {
      return await fleet.connect(
        command.start,
        command.count,
        command.burst ?? 1_000_000,
        command.timeout ?? 600,
      );
    }
    if (command.cmd === 'converge') {
      return await fleet.converge(command.t0, command.timeout ?? 600);
    }
    if (command.cmd === 'close') return null;
    return { error: `unknown command '${command.cmd}'` };
  } catch (error) {
    if (error instanceof RuntimeError || error instanceof TimeoutError) {
      return { error: error.message };
    }
    throw error;
  }
}

async function serve(target, mesh) {
  const fleet = new Fleet(target, mesh);
  const lines = readline.createInterface({ input: process.stdin, crlfDelay: Infinity });
  try {
    for await (const line of lines) {
      const reply = await answer(fleet, line);
      if (reply === null) break;
      process.stdout.write(`${JSON.stringify(reply)}\n`);
    }
  } finally {
    lines.close();
    fleet.close();
  }
}

function usage(message) {
  process.stderr.write(
    'usage: node bench/ads_clients.js --target HOST:PORT [--mesh NAME]\n' +
      'Simulated Envoys for the convergence benchmark: many ADS streams in one Node.js process.\n' +
      (message ? `error: ${message}\n` : ''),
  );
  process.exit(message ? 2 : 0);
}

function main(argv) {
  const args = { target: null, mesh: 'bench' };
  for (let i = 0; i < argv.length; i++) {
    const [flag, inline] = argv[i].split(/=(.*)/s, 2);
    if (flag === '-h' || flag === '--help') usage(null);
    if (flag !== '--target' && flag !== '--mesh') usage(`unrecognized argument ${argv[i]}`);
    const value = inline !== undefined ? inline : argv[++i];
    if (value === undefined) usage(`argument ${flag}: expected one argument`);
    args[flag.slice(2)] = value;
  }
  if (!args.target) usage('the following arguments are required: --target');
  serve(args.target, args.mesh).then(
    () => process.exit(0),
    (error) => {
      process.stderr.write(`${error.stack || error}\n`);
      process.exit(1);
    },
  );
}

if (require.main === module) main(process.argv.slice(2));
