// The one way the app talks to the node: fetch over the node's HTTP API
// (same origin, no CDN, no other host). Every failure becomes an ApiError
// whose message is words a person can read: the API's own
// `{"error":{"code","message"}}` body when there is one, otherwise what
// went wrong with the connection.

/** A failed API call, with the node's error code and message. */
export class ApiError extends Error {
  constructor(
    readonly status: number,
    readonly code: string,
    message: string,
  ) {
    super(message);
    this.name = 'ApiError';
  }
}

/** Reads an error body in the API's shape, or describes a foreign one. */
export async function errorFrom(res: Response): Promise<ApiError> {
  const text = await res.text().catch(() => '');
  try {
    const body = JSON.parse(text);
    if (body && body.error && typeof body.error.message === 'string') {
      return new ApiError(res.status, String(body.error.code ?? 'error'), body.error.message);
    }
  } catch {
    // not JSON: fall through
  }
  const snippet = text.trim().slice(0, 200);
  return new ApiError(
    res.status,
    'http_' + res.status,
    `the node answered ${res.status} ${res.statusText}` + (snippet ? `: ${snippet}` : ''),
  );
}

/** fetch that turns a network failure into an ApiError too. */
export async function request(path: string, init?: RequestInit): Promise<Response> {
  let res: Response;
  try {
    res = await fetch(path, init);
  } catch (e) {
    throw new ApiError(0, 'unreachable', `cannot reach the node (${(e as Error).message})`);
  }
  if (!res.ok) throw await errorFrom(res);
  return res;
}

/** GET a JSON body. */
export async function getJson<T>(path: string, init?: RequestInit): Promise<T> {
  const res = await request(path, init);
  return (await res.json()) as T;
}

/** POST a JSON body, read a JSON answer. */
export async function postJson<T>(path: string, body: unknown, headers?: HeadersInit): Promise<T> {
  const res = await request(path, {
    method: 'POST',
    headers: { 'content-type': 'application/json', ...headers },
    body: JSON.stringify(body),
  });
  return (await res.json()) as T;
}

/** Any thrown value as one sentence for the page. */
export function describe(e: unknown): string {
  if (e instanceof ApiError) return e.message;
  if (e instanceof Error) return e.message;
  return String(e);
}
