// Talking to meshplane serve: the App Mesh API, /meshplane/v1 and the console's event stream.
// The token (if any) is kept in this tab's sessionStorage and sent as a bearer token.

export interface Signals {
  rate: number;
  errorRate: number | null;
  p99: number | null;
}

export interface GraphNode {
  id: string;
  kind: "gateway" | "service" | "router" | "route" | "node";
  name: string;
  label: string;
  state: "ok" | "nack" | "down" | "idle";
}

export interface GraphEdge {
  id: string;
  source: string;
  target: string;
  kind: "calls" | "provider" | "route" | "target";
  weight: number | null;
  share: number | null;
  signals: Signals | null;
  mtls: boolean;
  health: "healthy" | "degraded" | "failure" | "none";
}

export interface Graph {
  mesh: string;
  nodes: GraphNode[];
  edges: GraphEdge[];
}

export interface Resource {
  kind: string;
  name: string;
  parent: string | null;
  arn: string;
  version: number;
  status: string;
  tags: { key: string; value: string }[];
  spec: Record<string, unknown>;
  lastChange: { principal: string; operation: string; at: number } | null;
  proxies?: {
    nodeId: string;
    peer: string;
    connectedSince: string;
    types: Record<string, { synced: boolean; lastNack: { error: string; at: string } | null }>;
  }[];
}

const TOKEN_KEY = "meshplane.token";

export function token(): string {
  return sessionStorage.getItem(TOKEN_KEY) ?? "";
}

export function setToken(value: string): void {
  if (value) sessionStorage.setItem(TOKEN_KEY, value);
  else sessionStorage.removeItem(TOKEN_KEY);
}

function headers(extra: Record<string, string> = {}): Record<string, string> {
  const found = token();
  return found ? { ...extra, authorization: `Bearer ${found}` } : extra;
}

export class ApiError extends Error {}

async function request<T>(method: string, path: string, body?: unknown): Promise<T> {
  const response = await fetch(path, {
    method,
    headers: headers(body === undefined ? {} : { "content-type": "application/json" }),
    body: body === undefined ? undefined : JSON.stringify(body),
  });
  const text = await response.text();
  let data: unknown = null;
  try {
    data = text ? JSON.parse(text) : null;
  } catch {
    data = null;
  }
  if (!response.ok) {
    const message =
      data && typeof data === "object" && "message" in data
        ? String((data as { message: unknown }).message)
        : `HTTP ${response.status}`;
    throw new ApiError(message);
  }
  return data as T;
}

export async function meshes(): Promise<string[]> {
  const found: string[] = [];
  let next: string | null = null;
  do {
    const query: string = next ? `?nextToken=${encodeURIComponent(next)}` : "";
    const page = await request<{ meshes: { meshName: string }[]; nextToken?: string | null }>(
      "GET",
      `/v20190125/meshes${query}`,
    );
    found.push(...page.meshes.map((m) => m.meshName));
    next = page.nextToken ?? null;
  } while (next && found.length < 10000);
  return found;
}

export function resources(mesh: string): Promise<{ resources: Resource[] }> {
  return request("GET", `/meshplane/v1/console/resources?mesh=${encodeURIComponent(mesh)}`);
}

// `window`: seconds of signals on the edges (the server's default, 60, when null)
function graphQuery(mesh: string, window: string | null): string {
  const query = `mesh=${encodeURIComponent(mesh)}`;
  return window ? `${query}&window=${encodeURIComponent(window)}` : query;
}

export function graph(mesh: string, window: string | null): Promise<Graph> {
  return request("GET", `/meshplane/v1/console/graph?${graphQuery(mesh, window)}`);
}

export function updateRoute(
  mesh: string,
  router: string,
  route: string,
  spec: Record<string, unknown>,
): Promise<unknown> {
  const path =
    `/v20190125/meshes/${encodeURIComponent(mesh)}/virtualRouter/` +
    `${encodeURIComponent(router)}/routes/${encodeURIComponent(route)}`;
  return request("PUT", path, { spec });
}

// Server-sent events over fetch (EventSource cannot send the Authorization header).
export async function follow(
  mesh: string,
  window: string | null,
  onGraph: (graph: Graph) => void,
  signal: AbortSignal,
): Promise<void> {
  const response = await fetch(
    `/meshplane/v1/console/events?${graphQuery(mesh, window)}`,
    { headers: headers({ accept: "text/event-stream" }), signal },
  );
  if (!response.ok || !response.body) throw new ApiError(`event stream: HTTP ${response.status}`);
  const reader = response.body.pipeThrough(new TextDecoderStream()).getReader();
  let buffer = "";
  for (;;) {
    const { value, done } = await reader.read();
    if (done) return;
    buffer += value;
    let end = buffer.indexOf("\n\n");
    while (end >= 0) {
      const block = buffer.slice(0, end);
      buffer = buffer.slice(end + 2);
      const data = block
        .split("\n")
        .filter((line) => line.startsWith("data: "))
        .map((line) => line.slice(6))
        .join("\n");
      if (data) onGraph(JSON.parse(data) as Graph);
      end = buffer.indexOf("\n\n");
    }
    if (buffer.length > 8_000_000) throw new ApiError("event stream: an event is too large");
  }
}
