import express from 'express';
import helmet from 'helmet';
import { pinoHttp } from 'pino-http';
import type { SerializedRequest } from 'pino';
import type { Logger } from 'pino';
import type { ApiVideoClient } from './apivideo/client';
import type { Config } from './config';
import { healthRoutes, type Readiness } from './http/health';
import { problemHandler, routeNotFound } from './http/problem';
import { requestId } from './http/request-id';
import { uploadRoute } from './http/upload-route';
import { getVideoRoute } from './http/videos-route';

export interface AppDeps {
  config: Config;
  logger: Logger;
  apivideo: ApiVideoClient;
  readiness: Readiness;
}

/** Builds the relay from explicit parts: no environment, no globals, so tests can build many. */
export function createApp({ config, logger, apivideo, readiness }: AppDeps): express.Express {
  const app = express();
  app.disable('x-powered-by');
  app.set('etag', false);
  app.use(
    pinoHttp({
      logger,
      genReqId: requestId,
      // Headers only at debug: they are noise at info, and redaction covers their credentials.
      serializers: {
        req: (req: SerializedRequest) => ({
          id: req.id,
          method: req.method,
          url: req.url,
          remoteAddress: req.remoteAddress,
          ...(logger.isLevelEnabled('debug') ? { headers: req.headers } : {}),
        }),
        res: (res: { statusCode: number }) => ({ statusCode: res.statusCode }),
      },
      // Probes every few seconds would drown the upload lines.
      autoLogging: { ignore: (req) => req.url === '/healthz' || req.url === '/readyz' },
    }),
  );
  app.use(helmet());
  app.use(healthRoutes(readiness));
  app.post(
    '/v1/videos',
    uploadRoute({
      client: apivideo,
      settings: config.upload,
      formLimits: { fields: 32, fieldSize: 64 * 1024 },
      logger,
    }),
  );
  app.get('/v1/videos/:videoId', getVideoRoute(apivideo));
  app.use(routeNotFound);
  app.use(problemHandler(logger));
  return app;
}
