import type { KubernetesObject } from '@kubernetes/client-node';

/** Names one object; its string form is "namespace/name" ("name" alone for cluster-scoped objects). */
export interface ObjectKey {
  namespace: string;
  name: string;
}

/** A kind's REST coordinates; the core group is ''. */
export interface ResourceType {
  group: string;
  version: string;
  plural: string;
  kind: string;
}

/** The queue key of an object: "namespace/name", or "name" when it has no namespace. */
export function keyOf(o: KubernetesObject): string {
  const name = o.metadata?.name;
  if (!name) throw new Error('an object without metadata.name has no key');
  const namespace = o.metadata?.namespace;
  return namespace ? `${namespace}/${name}` : name;
}

/** The inverse of keyOf; a key without a slash is a cluster-scoped name (namespace ''). */
export function parseKey(k: string): ObjectKey {
  const slash = k.indexOf('/');
  if (slash < 0) return { namespace: '', name: k };
  return { namespace: k.slice(0, slash), name: k.slice(slash + 1) };
}

/** The string form of a key, as keyOf gives it for the object: "namespace/name", or "name". */
export function formatKey(k: ObjectKey): string {
  return k.namespace ? `${k.namespace}/${k.name}` : k.name;
}

/** The apiVersion field of a kind: "v1" for the core group, "group/version" otherwise. */
export function apiVersionOf(r: ResourceType): string {
  return r.group === '' ? r.version : `${r.group}/${r.version}`;
}

/** The collection path of a kind, in one namespace or (namespace undefined) in all of them. */
export function collectionPath(r: ResourceType, namespace?: string): string {
  const base = r.group === '' ? `/api/${r.version}` : `/apis/${r.group}/${r.version}`;
  return namespace === undefined ? `${base}/${r.plural}` : `${base}/namespaces/${encodeURIComponent(namespace)}/${r.plural}`;
}
