CREATE TABLE `clusterings` (
	`id` text PRIMARY KEY NOT NULL,
	`dataset_id` text NOT NULL,
	`k` integer NOT NULL,
	`fine_k` integer NOT NULL,
	`seed` integer NOT NULL,
	`val_fraction` real NOT NULL,
	`feature_kind` text NOT NULL,
	`sizes` text NOT NULL,
	`inertia` real NOT NULL,
	`fine_inertia` real NOT NULL,
	`preview_key` text NOT NULL,
	`duration_ms` real NOT NULL,
	`created_at` integer NOT NULL,
	FOREIGN KEY (`dataset_id`) REFERENCES `datasets`(`id`) ON UPDATE no action ON DELETE cascade
);
--> statement-breakpoint
CREATE INDEX `clusterings_dataset_idx` ON `clusterings` (`dataset_id`,`k`,`seed`);--> statement-breakpoint
CREATE TABLE `datasets` (
	`id` text PRIMARY KEY NOT NULL,
	`name` text NOT NULL,
	`source` text NOT NULL,
	`count` integer NOT NULL,
	`height` integer NOT NULL,
	`width` integer NOT NULL,
	`channels` integer NOT NULL,
	`class_names` text NOT NULL,
	`images_key` text NOT NULL,
	`bytes` integer NOT NULL,
	`sha256` text NOT NULL,
	`feature_kind` text NOT NULL,
	`feature_dim` integer NOT NULL,
	`features_key` text NOT NULL,
	`import_ms` real NOT NULL,
	`created_at` integer NOT NULL
);
--> statement-breakpoint
CREATE TABLE `events` (
	`id` integer PRIMARY KEY AUTOINCREMENT NOT NULL,
	`at` integer NOT NULL,
	`type` text NOT NULL,
	`dataset_id` text,
	`run_id` text,
	`expert_id` text,
	`worker_id` text,
	`data` text
);
--> statement-breakpoint
CREATE INDEX `events_run_idx` ON `events` (`run_id`,`id`);--> statement-breakpoint
CREATE INDEX `events_type_idx` ON `events` (`type`);--> statement-breakpoint
CREATE TABLE `experts` (
	`id` text PRIMARY KEY NOT NULL,
	`run_id` text NOT NULL,
	`cluster` integer NOT NULL,
	`objective` text NOT NULL,
	`schedule` text,
	`status` text NOT NULL,
	`train_shard_id` text,
	`val_shard_id` text,
	`target_steps` integer NOT NULL,
	`step` integer DEFAULT 0 NOT NULL,
	`loss` real,
	`images_per_sec` real,
	`worker_id` text,
	`last_heartbeat_at` integer,
	`checkpoint_id` text,
	`checkpoint_step` integer,
	`validation_loss` real,
	`init_from_expert_id` text,
	`created_at` integer NOT NULL,
	`updated_at` integer NOT NULL,
	FOREIGN KEY (`run_id`) REFERENCES `runs`(`id`) ON UPDATE no action ON DELETE cascade,
	FOREIGN KEY (`train_shard_id`) REFERENCES `shards`(`id`) ON UPDATE no action ON DELETE no action,
	FOREIGN KEY (`val_shard_id`) REFERENCES `shards`(`id`) ON UPDATE no action ON DELETE no action
);
--> statement-breakpoint
CREATE UNIQUE INDEX `experts_run_cluster` ON `experts` (`run_id`,`cluster`);--> statement-breakpoint
CREATE INDEX `experts_status_idx` ON `experts` (`status`,`objective`);--> statement-breakpoint
CREATE TABLE `jobs` (
	`id` text PRIMARY KEY NOT NULL,
	`name` text NOT NULL,
	`status` text NOT NULL,
	`payload` text NOT NULL,
	`result` text,
	`error` text,
	`progress` text,
	`attempts` integer DEFAULT 0 NOT NULL,
	`max_attempts` integer DEFAULT 3 NOT NULL,
	`run_id` text,
	`dataset_id` text,
	`created_at` integer NOT NULL,
	`started_at` integer,
	`finished_at` integer
);
--> statement-breakpoint
CREATE INDEX `jobs_status_idx` ON `jobs` (`status`,`created_at`);--> statement-breakpoint
CREATE TABLE `runs` (
	`id` text PRIMARY KEY NOT NULL,
	`name` text NOT NULL,
	`dataset_id` text NOT NULL,
	`clustering_id` text,
	`status` text NOT NULL,
	`k` integer NOT NULL,
	`objectives` text NOT NULL,
	`fine_k` integer,
	`val_fraction` real,
	`config` text NOT NULL,
	`error` text,
	`created_at` integer NOT NULL,
	`updated_at` integer NOT NULL,
	`started_at` integer,
	`finished_at` integer,
	FOREIGN KEY (`dataset_id`) REFERENCES `datasets`(`id`) ON UPDATE no action ON DELETE no action,
	FOREIGN KEY (`clustering_id`) REFERENCES `clusterings`(`id`) ON UPDATE no action ON DELETE no action
);
--> statement-breakpoint
CREATE INDEX `runs_status_idx` ON `runs` (`status`);--> statement-breakpoint
CREATE TABLE `shards` (
	`id` text PRIMARY KEY NOT NULL,
	`clustering_id` text NOT NULL,
	`cluster` integer NOT NULL,
	`split` text NOT NULL,
	`key` text NOT NULL,
	`index_key` text NOT NULL,
	`count` integer NOT NULL,
	`bytes` integer NOT NULL,
	`sha256` text NOT NULL,
	`class_counts` text NOT NULL,
	`created_at` integer NOT NULL,
	FOREIGN KEY (`clustering_id`) REFERENCES `clusterings`(`id`) ON UPDATE no action ON DELETE cascade
);
--> statement-breakpoint
CREATE UNIQUE INDEX `shards_clustering_cluster_split` ON `shards` (`clustering_id`,`cluster`,`split`);