// Content types of uploaded files, from their names: enough for browsers to show logs and reports.
const byExtension: Record<string, string> = {
  '.txt': 'text/plain; charset=utf-8',
  '.log': 'text/plain; charset=utf-8',
  '.md': 'text/markdown; charset=utf-8',
  '.json': 'application/json',
  '.html': 'text/html; charset=utf-8',
  '.xml': 'application/xml',
  '.csv': 'text/csv; charset=utf-8',
  '.svg': 'image/svg+xml',
  '.png': 'image/png',
  '.jpg': 'image/jpeg',
  '.gif': 'image/gif',
  '.zip': 'application/zip',
  '.gz': 'application/gzip',
  '.tgz': 'application/gzip',
  '.tar': 'application/x-tar',
};

export function contentTypeOf(name: string): string {
  const m = /\.[a-z0-9]+$/i.exec(name);
  return (m && byExtension[m[0].toLowerCase()]) ?? 'application/octet-stream';
}
