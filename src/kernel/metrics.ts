import { Counter, Gauge, Histogram, Registry, collectDefaultMetrics } from 'prom-client';
import { UPLOAD_OVERHEAD_BYTES } from './sizes';

/** What the budget's gauges read when scraped (the memory budget: src/engine/memory-budget.ts). */
export interface BudgetReading {
  readonly budget: number;
  readonly reserved: number;
  readonly overhead: number;
  readonly waiting: number;
}

/**
 * The relay's Prometheus metrics, on a registry of its own (tests build several apps in one
 * process). Every label comes from a fixed set (routes, error codes, retry reasons): who uploaded
 * is a log field, never a label, so no client can mint new series.
 */
export class RelayMetrics {
  readonly registry = new Registry();
  readonly uploadsStarted = new Counter({
    name: 'relay_uploads_started_total',
    help: 'Uploads started, by route',
    labelNames: ['route'],
    registers: [this.registry],
  });
  readonly uploadsCompleted = new Counter({
    name: 'relay_uploads_completed_total',
    help: 'Uploads completed: api.video acknowledged the last part',
    labelNames: ['route'],
    registers: [this.registry],
  });
  readonly uploadsFailed = new Counter({
    name: 'relay_uploads_failed_total',
    help: 'Uploads failed for good (a resumable upload: terminated, expired), by route and error code',
    labelNames: ['route', 'code'],
    registers: [this.registry],
  });
  readonly uploadsInterrupted = new Counter({
    name: 'relay_upload_interruptions_total',
    help: 'Requests of a resumable upload that ended before the upload did (it can be resumed), by route and error code',
    labelNames: ['route', 'code'],
    registers: [this.registry],
  });
  readonly bytesReceived = new Counter({
    name: 'relay_bytes_received_total',
    help: 'File bytes received from clients',
    registers: [this.registry],
  });
  readonly bytesRelayed = new Counter({
    name: 'relay_bytes_relayed_total',
    help: 'File bytes acknowledged by api.video',
    registers: [this.registry],
  });
  readonly partDuration = new Histogram({
    name: 'relay_part_upload_duration_seconds',
    help: 'Time to send one part and get its acknowledgement, retries included',
    buckets: [0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120],
    registers: [this.registry],
  });
  readonly upstreamRetries = new Counter({
    name: 'relay_upstream_retries_total',
    help: 'Upstream requests retried, by reason',
    labelNames: ['reason'],
    registers: [this.registry],
  });
  readonly uploadsInProgress = new Gauge({
    name: 'relay_uploads_in_progress',
    help: 'Uploads in progress',
    registers: [this.registry],
  });
  readonly bytesBuffered = new Gauge({
    name: 'relay_bytes_buffered',
    help: 'File bytes held in memory (parts being filled or in flight)',
    registers: [this.registry],
  });

  /** UPLOAD_MEMORY_BUDGET's own accounting, read when scraped (no copy that could drift). */
  private budget: BudgetReading | undefined;
  readonly memoryBudgetBytes = this.budgetGauge(
    'relay_memory_budget_bytes',
    'UPLOAD_MEMORY_BUDGET: what all uploads may hold together (file bytes and their own costs)',
    (b) => b.budget,
  );
  readonly memoryReservedBytes = this.budgetGauge(
    'relay_memory_reserved_bytes',
    'Bytes of the memory budget reserved by parts being filled or in flight',
    (b) => b.reserved,
  );
  readonly memoryOverheadBytes = this.budgetGauge(
    'relay_memory_overhead_bytes',
    `Bytes of the memory budget counted for uploads in progress besides their file bytes (${UPLOAD_OVERHEAD_BYTES / 1024} KiB each)`,
    (b) => b.overhead,
  );
  readonly memoryWaitingUploads = this.budgetGauge(
    'relay_memory_waiting_uploads',
    'Uploads waiting for room in the memory budget (reading paused: backpressure, not refusal)',
    (b) => b.waiting,
  );

  /** What /readyz decides from, read when scraped: alerts need it per instance, over time. */
  private health: RelayHealth | undefined;
  readonly ready = this.healthGauge(
    'relay_ready',
    'This instance is ready (1: /readyz answers 200) or not (0: draining, api.video not accepting the key, or the session store unreachable)',
    (h) => h.ready(),
  );
  readonly apivideoKeyAccepted = this.healthGauge(
    'relay_apivideo_key_accepted',
    'api.video accepted APIVIDEO_API_KEY at the last background check (1), or refused it or could not be reached (0)',
    (h) => h.apivideo(),
  );
  readonly sessionStoreUp = this.healthGauge(
    'relay_session_store_up',
    'The session store of resumable uploads (Redis) is connected (1) or not (0); always 1 in memory',
    (h) => h.sessionStore(),
  );

  constructor() {
    collectDefaultMetrics({ register: this.registry });
  }

  watchBudget(budget: BudgetReading): void {
    this.budget = budget;
  }

  watchHealth(health: RelayHealth): void {
    this.health = health;
  }

  private budgetGauge(name: string, help: string, read: (b: BudgetReading) => number): Gauge {
    return this.scrapedGauge(name, help, () => this.budget && read(this.budget));
  }

  private healthGauge(name: string, help: string, read: (h: RelayHealth) => boolean): Gauge {
    return this.scrapedGauge(name, help, () => this.health && (read(this.health) ? 1 : 0));
  }

  /** A gauge that reads its value when scraped; left as it is while there is nothing to read. */
  private scrapedGauge(name: string, help: string, read: () => number | undefined): Gauge {
    return new Gauge({
      name,
      help,
      registers: [this.registry],
      collect(this: Gauge) {
        const value = read();
        if (value !== undefined) this.set(value);
      },
    });
  }
}

/** The checks behind /readyz, as the app computes them. */
export interface RelayHealth {
  /** What /readyz answers. */
  ready(): boolean;
  /** api.video accepted the key recently. */
  apivideo(): boolean;
  /** The session store can be reached. */
  sessionStore(): boolean;
}
