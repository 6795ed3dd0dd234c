/** The budget's gauges read its own accounting when scraped. */
import { RelayMetrics } from '../../src/kernel/metrics';
import { MemoryBudget } from '../../src/engine/memory-budget';

test('relay_memory_budget_bytes, relay_memory_reserved_bytes and waiting uploads follow the budget', async () => {
  const metrics = new RelayMetrics();
  const budget = new MemoryBudget(100);
  metrics.watchBudget(budget);
  const held = budget.account();
  await held.reserve(80);
  const waiter = budget.account().reserve(50);
  const text = await metrics.registry.metrics();
  expect(text).toMatch(/^relay_memory_budget_bytes 100$/m);
  expect(text).toMatch(/^relay_memory_reserved_bytes 80$/m);
  expect(text).toMatch(/^relay_memory_waiting_uploads 1$/m);
  held.close();
  await waiter;
  const after = await metrics.registry.metrics();
  expect(after).toMatch(/^relay_memory_reserved_bytes 50$/m);
  expect(after).toMatch(/^relay_memory_waiting_uploads 0$/m);
});

test('relay_memory_overhead_bytes counts the uploads in progress besides their file bytes', async () => {
  const metrics = new RelayMetrics();
  const budget = new MemoryBudget(100, { perUpload: 7, keepForParts: 50 });
  metrics.watchBudget(budget);
  const uncharge = [budget.chargeUpload(), budget.chargeUpload()];
  expect(await metrics.registry.metrics()).toMatch(/^relay_memory_overhead_bytes 14$/m);
  uncharge.forEach((u) => u());
  expect(await metrics.registry.metrics()).toMatch(/^relay_memory_overhead_bytes 0$/m);
});
