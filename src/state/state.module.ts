import { Inject, Injectable, Module, OnApplicationShutdown } from '@nestjs/common';
import { REDIS, RedisConnections, RedisModule } from '../redis/redis.module.js';
import { AtomicStore, MemoryAtomicStore, RedisAtomicStore } from './atomic-store.js';
import { PriorityQueue, StorePriorityQueue } from './priority-queue.js';
import { MemoryPubSub, PubSub, RedisPubSub } from './pub-sub.js';

@Injectable()
class StateLifecycle implements OnApplicationShutdown {
  constructor(
    @Inject(PriorityQueue) private readonly queue: PriorityQueue,
    @Inject(AtomicStore) private readonly store: AtomicStore,
  ) {}

  async onApplicationShutdown(): Promise<void> {
    await this.queue.close();
    if (this.store instanceof MemoryAtomicStore) this.store.close();
  }
}

/**
 * The storage ports shared state goes through: an atomic script store, pub/sub and a priority
 * queue. Embedded mode gets in-process implementations; distributed mode the Redis ones. Features
 * inject the abstract classes and never know which.
 */
@Module({
  imports: [RedisModule],
  providers: [
    {
      provide: AtomicStore,
      inject: [REDIS],
      useFactory: (redis: RedisConnections | null): AtomicStore =>
        redis ? new RedisAtomicStore(redis.command, redis.prefix) : new MemoryAtomicStore(),
    },
    {
      provide: PubSub,
      inject: [REDIS],
      useFactory: (redis: RedisConnections | null): PubSub =>
        redis
          ? new RedisPubSub(redis.command, redis.patient('subscriber'), redis.prefix)
          : new MemoryPubSub(),
    },
    {
      provide: PriorityQueue,
      inject: [AtomicStore],
      // The queue's keys live in the atomic store (Redis, or its LocalDb in process) so admission
      // scripts read and pop them in the same atomic step as the key selection.
      useFactory: (store: AtomicStore): PriorityQueue => new StorePriorityQueue(store),
    },
    StateLifecycle,
  ],
  exports: [AtomicStore, PubSub, PriorityQueue, RedisModule],
})
export class StateModule {}
