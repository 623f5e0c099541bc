CREATE TABLE `checkpoints` (
	`id` text PRIMARY KEY NOT NULL,
	`expert_id` text NOT NULL,
	`lease_id` text,
	`step` integer NOT NULL,
	`key` text NOT NULL,
	`sha256` text NOT NULL,
	`bytes` integer NOT NULL,
	`final` integer DEFAULT false NOT NULL,
	`status` text NOT NULL,
	`reason` text,
	`validation_loss` real,
	`created_at` integer NOT NULL,
	`decided_at` integer,
	FOREIGN KEY (`expert_id`) REFERENCES `experts`(`id`) ON UPDATE no action ON DELETE cascade
);
--> statement-breakpoint
CREATE INDEX `checkpoints_expert_idx` ON `checkpoints` (`expert_id`,`step`);--> statement-breakpoint
CREATE TABLE `ensembles` (
	`id` text PRIMARY KEY NOT NULL,
	`run_id` text NOT NULL,
	`manifest_key` text NOT NULL,
	`manifest_sha256` text NOT NULL,
	`router_key` text NOT NULL,
	`router_sha256` text NOT NULL,
	`signature` text NOT NULL,
	`key_id` text NOT NULL,
	`defaults` text NOT NULL,
	`created_at` integer NOT NULL,
	FOREIGN KEY (`run_id`) REFERENCES `runs`(`id`) ON UPDATE no action ON DELETE no action
);
--> statement-breakpoint
CREATE INDEX `ensembles_run_idx` ON `ensembles` (`run_id`,`created_at`);--> statement-breakpoint
CREATE TABLE `leases` (
	`id` text PRIMARY KEY NOT NULL,
	`expert_id` text NOT NULL,
	`worker_id` text NOT NULL,
	`status` text NOT NULL,
	`start_step` integer NOT NULL,
	`last_step` integer NOT NULL,
	`granted_at` integer NOT NULL,
	`expires_at` integer NOT NULL,
	`ended_at` integer,
	FOREIGN KEY (`expert_id`) REFERENCES `experts`(`id`) ON UPDATE no action ON DELETE cascade,
	FOREIGN KEY (`worker_id`) REFERENCES `workers`(`id`) ON UPDATE no action ON DELETE no action
);
--> statement-breakpoint
CREATE UNIQUE INDEX `leases_one_active_per_expert` ON `leases` (`expert_id`) WHERE "leases"."status" = 'active';--> statement-breakpoint
CREATE INDEX `leases_status_expiry_idx` ON `leases` (`status`,`expires_at`);--> statement-breakpoint
CREATE INDEX `leases_worker_idx` ON `leases` (`worker_id`);--> statement-breakpoint
CREATE TABLE `worker_tokens` (
	`id` text PRIMARY KEY NOT NULL,
	`name` text NOT NULL,
	`token_hash` text NOT NULL,
	`prefix` text NOT NULL,
	`created_at` integer NOT NULL,
	`last_used_at` integer,
	`revoked_at` integer
);
--> statement-breakpoint
CREATE UNIQUE INDEX `worker_tokens_hash` ON `worker_tokens` (`token_hash`);--> statement-breakpoint
CREATE TABLE `workers` (
	`id` text PRIMARY KEY NOT NULL,
	`token_id` text NOT NULL,
	`name` text NOT NULL,
	`objective` text NOT NULL,
	`backend` text,
	`hardware` text,
	`protocol_version` integer,
	`online` integer DEFAULT false NOT NULL,
	`connected_at` integer,
	`last_seen_at` integer,
	`created_at` integer NOT NULL,
	FOREIGN KEY (`token_id`) REFERENCES `worker_tokens`(`id`) ON UPDATE no action ON DELETE no action
);
--> statement-breakpoint
CREATE INDEX `workers_token_idx` ON `workers` (`token_id`);