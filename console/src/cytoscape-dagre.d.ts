declare module "cytoscape-dagre" {
  import type { Ext } from "cytoscape";
  const extension: Ext;
  export default extension;
}
