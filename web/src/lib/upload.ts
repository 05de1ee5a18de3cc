// Uploading a contribution file with progress: XMLHttpRequest (fetch has
// no upload progress), the raw file as the body, the datanet's query
// (contributor, file name), and the signed-request headers of the
// contributor's key over the exact body.
import { errorFrom, ApiError } from './api';
import type { KeyPair } from './keys';
import { signRequest } from './signedRequest';
import type { ContributionResponse } from './wire';

export function uploadContribution(
  datanet: string,
  file: File,
  key: KeyPair,
  onProgress: (sent: number, total: number) => void,
): Promise<ContributionResponse> {
  return file.arrayBuffer().then(
    (buf) =>
      new Promise((resolve, reject) => {
        const body = new Uint8Array(buf);
        const path =
          `/v1/datanets/${encodeURIComponent(datanet)}/contributions` +
          `?contributor=${key.address}&file_name=${encodeURIComponent(file.name)}`;
        const xhr = new XMLHttpRequest();
        xhr.open('POST', path);
        xhr.setRequestHeader('content-type', 'application/octet-stream');
        for (const [k, v] of Object.entries(signRequest(key, 'POST', path, body))) xhr.setRequestHeader(k, v);
        xhr.upload.onprogress = (e) => onProgress(e.loaded, e.lengthComputable ? e.total : body.length);
        xhr.onerror = () => reject(new ApiError(0, 'unreachable', 'the upload failed: cannot reach the node'));
        xhr.onload = async () => {
          const res = new Response(xhr.responseText, { status: xhr.status, statusText: xhr.statusText });
          if (xhr.status >= 200 && xhr.status < 300) resolve(JSON.parse(xhr.responseText));
          else reject(await errorFrom(res));
        };
        xhr.send(body);
      }),
  );
}
