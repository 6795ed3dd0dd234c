import { Router } from 'express';

export interface Readiness {
  isReady(): boolean;
}

/** /healthz: the process answers. /readyz: it can do its job (api.video accepts the key). */
export function healthRoutes(readiness: Readiness): Router {
  const router = Router();
  router.get('/healthz', (_req, res) => {
    res.json({ status: 'ok' });
  });
  router.get('/readyz', (_req, res) => {
    const ready = readiness.isReady();
    res.status(ready ? 200 : 503).json({ status: ready ? 'ready' : 'not_ready' });
  });
  return router;
}
