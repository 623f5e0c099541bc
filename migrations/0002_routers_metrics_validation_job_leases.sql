CREATE TABLE `expert_metrics` (
	`id` integer PRIMARY KEY AUTOINCREMENT NOT NULL,
	`expert_id` text NOT NULL,
	`run_id` text NOT NULL,
	`step` integer NOT NULL,
	`loss` real NOT NULL,
	`images_per_sec` real,
	`at` integer NOT NULL,
	FOREIGN KEY (`expert_id`) REFERENCES `experts`(`id`) ON UPDATE no action ON DELETE cascade
);
--> statement-breakpoint
CREATE INDEX `expert_metrics_expert_idx` ON `expert_metrics` (`expert_id`,`step`);--> statement-breakpoint
CREATE INDEX `expert_metrics_run_idx` ON `expert_metrics` (`run_id`,`id`);--> statement-breakpoint
CREATE TABLE `routers` (
	`id` text PRIMARY KEY NOT NULL,
	`run_id` text NOT NULL,
	`key` text NOT NULL,
	`sha256` text NOT NULL,
	`bytes` integer NOT NULL,
	`steps` integer NOT NULL,
	`architecture` text NOT NULL,
	`accuracy` text NOT NULL,
	`created_at` integer NOT NULL,
	FOREIGN KEY (`run_id`) REFERENCES `runs`(`id`) ON UPDATE no action ON DELETE cascade
);
--> statement-breakpoint
CREATE INDEX `routers_run_idx` ON `routers` (`run_id`,`created_at`);--> statement-breakpoint
ALTER TABLE `experts` ADD `validation_baseline` real;--> statement-breakpoint
ALTER TABLE `experts` ADD `validation_error` text;--> statement-breakpoint
ALTER TABLE `jobs` ADD `heartbeat_at` integer;--> statement-breakpoint
ALTER TABLE `jobs` ADD `run_after` integer;--> statement-breakpoint
ALTER TABLE `jobs` ADD `claimed_by` text;--> statement-breakpoint
ALTER TABLE `ensembles` ADD `router_id` text;