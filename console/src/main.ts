// The meshplane console: mesh list, live topology (Cytoscape.js, dagre layered layout, left to
// right) with a text alternative, route weights, and the resource browser.  Every text that
// comes from the server goes into the page through textContent (never as HTML).
import cytoscape, { type Core, type ElementDefinition } from "cytoscape";
import dagre from "cytoscape-dagre";
import * as api from "./api";
import "./style.css";

cytoscape.use(dagre);

const $ = <T extends HTMLElement>(selector: string): T => {
  const found = document.querySelector<T>(selector);
  if (!found) throw new Error(`missing ${selector}`);
  return found;
};

let cy: Core | null = null;
let shape = "";
let current: AbortController | null = null;
let resourcesCache: api.Resource[] = [];

function message(text: string): void {
  $("#message").textContent = text;
}

function cell(row: HTMLTableRowElement, text: string): HTMLTableCellElement {
  const td = row.insertCell();
  td.textContent = text;
  return td;
}

function fmtRate(s: api.Signals | null): string {
  return s ? s.rate.toFixed(1) : "-";
}
function fmtErrors(s: api.Signals | null): string {
  return s && s.errorRate !== null ? `${(s.errorRate * 100).toFixed(1)}%` : "-";
}
function fmtP99(s: api.Signals | null): string {
  return s && s.p99 !== null ? `${Math.round(s.p99)}ms` : "-";
}

function edgeLabel(edge: api.GraphEdge): string {
  const lines: string[] = [];
  const head = [edge.mtls ? "🔒" : "", edge.weight !== null ? `weight ${edge.weight} (${edge.share}%)` : ""]
    .filter(Boolean)
    .join(" ");
  if (head) lines.push(head);
  if (edge.signals) {
    lines.push(`${fmtRate(edge.signals)}/s · ${fmtErrors(edge.signals)} 5xx · p99 ${fmtP99(edge.signals)}`);
  }
  return lines.join("\n");
}

const COLORS: Record<string, string> = {
  healthy: "#2e7d32",
  degraded: "#ef6c00",
  failure: "#c62828",
  none: "#9e9e9e",
};

function elements(graph: api.Graph): ElementDefinition[] {
  return [
    ...graph.nodes.map((n) => ({
      group: "nodes" as const,
      data: { id: n.id, label: n.label, kind: n.kind, state: n.state },
    })),
    ...graph.edges.map((e) => ({
      group: "edges" as const,
      data: {
        id: e.id,
        source: e.source,
        target: e.target,
        label: edgeLabel(e),
        color: COLORS[e.health] ?? COLORS.none,
      },
    })),
  ];
}

function drawGraph(graph: api.Graph): void {
  const container = $("#graph");
  const structure = JSON.stringify([graph.nodes.map((n) => n.id), graph.edges.map((e) => e.id)]);
  if (cy === null) {
    cy = cytoscape({
      container,
      elements: [],
      wheelSensitivity: 0.3,
      style: [
        {
          selector: "node",
          style: {
            label: "data(label)",
            "text-wrap": "wrap",
            "text-valign": "center",
            "text-halign": "center",
            "font-size": 11,
            width: "label",
            height: "label",
            padding: "10px",
            shape: "round-rectangle",
            "background-color": "#e3f2fd",
            "border-width": 1,
            "border-color": "#1565c0",
          },
        },
        { selector: 'node[kind = "gateway"]', style: { shape: "hexagon", "background-color": "#ede7f6" } },
        { selector: 'node[kind = "service"]', style: { shape: "ellipse", "background-color": "#fffde7" } },
        { selector: 'node[kind = "router"]', style: { shape: "diamond", "background-color": "#f3e5f5" } },
        { selector: 'node[kind = "route"]', style: { "background-color": "#fafafa" } },
        { selector: 'node[state = "nack"], node[state = "down"]', style: { "background-color": "#ffcdd2", "border-color": "#c62828", "border-width": 3 } },
        {
          selector: "edge",
          style: {
            label: "data(label)",
            "font-size": 10,
            "curve-style": "bezier",
            "target-arrow-shape": "triangle",
            "line-color": "data(color)",
            "target-arrow-color": "data(color)",
            width: 2,
            "text-background-color": "#ffffff",
            "text-background-opacity": 0.85,
            "text-wrap": "wrap",
            "text-margin-y": -8,
          },
        },
      ],
    });
  }
  if (structure !== shape) {
    cy.elements().remove();
    cy.add(elements(graph));
    cy.layout({ name: "dagre", rankDir: "LR", nodeSep: 50, rankSep: 190 } as cytoscape.LayoutOptions).run();
    shape = structure;
  } else {
    for (const element of elements(graph)) {
      cy.getElementById(String(element.data.id)).data(element.data);
    }
  }
  drawTables(graph);
}

function drawTables(graph: api.Graph): void {
  const names = new Map(graph.nodes.map((n) => [n.id, `${n.kind} ${n.name}`]));
  const nodes = $<HTMLTableElement>("#graph-nodes").tBodies[0];
  nodes.replaceChildren();
  for (const n of graph.nodes) {
    const row = nodes.insertRow();
    row.dataset.id = n.id;
    row.dataset.state = n.state;
    cell(row, n.kind);
    cell(row, n.name);
    cell(row, n.state);
  }
  const edges = $<HTMLTableElement>("#graph-edges").tBodies[0];
  edges.replaceChildren();
  for (const e of graph.edges) {
    const row = edges.insertRow();
    row.dataset.id = e.id;
    cell(row, names.get(e.source) ?? e.source);
    cell(row, names.get(e.target) ?? e.target);
    cell(row, e.kind);
    cell(row, e.weight === null ? "-" : `${e.weight} (${e.share}%)`);
    cell(row, fmtRate(e.signals));
    cell(row, fmtErrors(e.signals));
    cell(row, fmtP99(e.signals));
    cell(row, e.mtls ? "yes" : "no");
    cell(row, e.health);
  }
  $("#live").textContent = `live · signals of the last ${signalWindow() ?? "60"} s · updated ${new Date().toLocaleTimeString()}`;
}

function routeTargets(spec: Record<string, unknown>): { virtualNode: string; weight: number }[] | null {
  for (const kind of ["httpRoute", "http2Route", "grpcRoute", "tcpRoute"]) {
    const route = spec[kind] as { action?: { weightedTargets?: { virtualNode: string; weight: number }[] } } | undefined;
    if (route?.action?.weightedTargets) return route.action.weightedTargets;
  }
  return null;
}

function drawWeights(mesh: string, resources: api.Resource[]): void {
  const box = $("#weights");
  box.replaceChildren();
  for (const resource of resources.filter((r) => r.kind === "route")) {
    const targets = routeTargets(resource.spec);
    if (!targets) continue;
    const form = document.createElement("form");
    form.className = "weights";
    form.dataset.route = `${resource.parent}/${resource.name}`;
    const title = document.createElement("strong");
    title.textContent = `${resource.parent} / ${resource.name}`;
    form.append(title);
    const inputs: HTMLInputElement[] = [];
    for (const target of targets) {
      const label = document.createElement("label");
      const text = document.createElement("span");
      text.textContent = target.virtualNode;
      const input = document.createElement("input");
      input.type = "number";
      input.min = "0";
      input.max = "100";
      input.value = String(target.weight);
      input.dataset.node = target.virtualNode;
      input.setAttribute("aria-label", `weight of ${target.virtualNode} on ${resource.parent}/${resource.name}`);
      inputs.push(input);
      label.append(text, input);
      form.append(label);
    }
    const button = document.createElement("button");
    button.type = "submit";
    button.textContent = "Apply weights";
    form.append(button);
    form.addEventListener("submit", (event) => {
      event.preventDefault();
      const spec = structuredClone(resource.spec);
      const wanted = routeTargets(spec);
      if (!wanted) return;
      for (const target of wanted) {
        const input = inputs.find((i) => i.dataset.node === target.virtualNode);
        if (input) target.weight = Number(input.value);
      }
      api
        .updateRoute(mesh, resource.parent ?? "", resource.name, spec)
        .then(() => {
          message(`weights of ${resource.parent}/${resource.name} updated`);
          return loadResources(mesh);
        })
        .catch((error: Error) => message(`weights not changed: ${error.message}`));
    });
    box.append(form);
  }
}

function drawResources(resources: api.Resource[]): void {
  const body = $<HTMLTableElement>("#resources").tBodies[0];
  body.replaceChildren();
  for (const resource of resources) {
    const row = body.insertRow();
    row.dataset.kind = resource.kind;
    cell(row, resource.kind);
    const name = row.insertCell();
    const details = document.createElement("details");
    const summary = document.createElement("summary");
    summary.textContent = resource.parent ? `${resource.parent}/${resource.name}` : resource.name;
    const spec = document.createElement("pre");
    spec.textContent = JSON.stringify({ spec: resource.spec, tags: resource.tags }, null, 2);
    details.append(summary, spec);
    for (const proxy of resource.proxies ?? []) {
      const line = document.createElement("p");
      const nacks = Object.entries(proxy.types)
        .filter(([, t]) => t.lastNack)
        .map(([type, t]) => `${type} NACK: ${t.lastNack?.error}`);
      line.textContent = `proxy ${proxy.nodeId} from ${proxy.peer} since ${proxy.connectedSince}` +
        (nacks.length ? ` — ${nacks.join("; ")}` : " — in sync");
      details.append(line);
    }
    name.append(details);
    cell(row, String(resource.version));
    cell(row, resource.status);
    cell(row, resource.arn);
    const change = resource.lastChange;
    cell(
      row,
      change
        ? `${change.operation} by ${change.principal} at ${new Date(change.at * 1000).toLocaleString()}`
        : "-",
    );
  }
}

async function loadResources(mesh: string): Promise<void> {
  const found = await api.resources(mesh);
  resourcesCache = found.resources;
  drawResources(resourcesCache);
  drawWeights(mesh, resourcesCache);
}

// the seconds of signals the edges show: the page's own ?window=S (the server's 60 s if absent)
function signalWindow(): string | null {
  return new URLSearchParams(location.search).get("window");
}

async function openMesh(mesh: string): Promise<void> {
  current?.abort();
  const controller = new AbortController();
  current = controller;
  shape = "";
  message("");
  try {
    drawGraph(await api.graph(mesh, signalWindow()));
    await loadResources(mesh);
    document.body.dataset.ready = "true";
  } catch (error) {
    message(`cannot read mesh ${mesh}: ${(error as Error).message}`);
    return;
  }
  // follow the graph; reconnect after a pause when the stream ends
  for (;;) {
    if (controller.signal.aborted) return;
    try {
      await api.follow(mesh, signalWindow(), drawGraph, controller.signal);
    } catch (error) {
      if (controller.signal.aborted) return;
      $("#live").textContent = `reconnecting (${(error as Error).message})`;
    }
    await new Promise((resolve) => setTimeout(resolve, 2000));
  }
}

async function start(): Promise<void> {
  document.body.dataset.ready = "false";
  const select = $<HTMLSelectElement>("#mesh");
  try {
    const names = await api.meshes();
    select.replaceChildren(
      ...names.map((name) => {
        const option = document.createElement("option");
        option.value = name;
        option.textContent = name;
        return option;
      }),
    );
    const wanted = new URLSearchParams(location.search).get("mesh");
    if (wanted && names.includes(wanted)) select.value = wanted;
    if (select.value) void openMesh(select.value);
    else message("no mesh yet: create one with the App Mesh API or meshplane apply");
  } catch (error) {
    message(`cannot list meshes: ${(error as Error).message} (paste an API token above)`);
  }
}

$("#token-form").addEventListener("submit", (event) => {
  event.preventDefault();
  api.setToken($<HTMLInputElement>("#token").value.trim());
  $<HTMLInputElement>("#token").value = "";
  void start();
});
$<HTMLSelectElement>("#mesh").addEventListener("change", (event) => {
  void openMesh((event.target as HTMLSelectElement).value);
});
void start();
