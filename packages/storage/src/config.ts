/**
 * Choosing a store from configuration, so the coordinator's startup code is one call and the
 * embedded directory store stays the zero-configuration default.
 */
import { LocalObjectStore, type LocalObjectStoreOptions } from './local-store.js';
import { S3ObjectStore, type S3ObjectStoreOptions } from './s3-store.js';

export type LocalObjectStoreConfig = { kind: 'local' } & LocalObjectStoreOptions;
export type S3ObjectStoreConfig = { kind: 's3' } & S3ObjectStoreOptions;
export type ObjectStoreConfig = LocalObjectStoreConfig | S3ObjectStoreConfig;

/** Build the store a config describes; the return type follows `kind`. */
export function createObjectStore(config: LocalObjectStoreConfig): LocalObjectStore;
export function createObjectStore(config: S3ObjectStoreConfig): S3ObjectStore;
export function createObjectStore(config: ObjectStoreConfig): LocalObjectStore | S3ObjectStore;
export function createObjectStore(config: ObjectStoreConfig): LocalObjectStore | S3ObjectStore {
  switch (config.kind) {
    case 'local': {
      const { kind: _kind, ...options } = config;
      return new LocalObjectStore(options);
    }
    case 's3': {
      const { kind: _kind, ...options } = config;
      return new S3ObjectStore(options);
    }
  }
}
