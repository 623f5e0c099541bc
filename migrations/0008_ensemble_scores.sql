CREATE TABLE `ensemble_scores` (
	`ensemble_id` text PRIMARY KEY NOT NULL,
	`status` text NOT NULL,
	`job_id` text,
	`samples` integer NOT NULL,
	`seed` integer NOT NULL,
	`error` text,
	`json_key` text,
	`png_key` text,
	`summary` text,
	`created_at` integer NOT NULL,
	`finished_at` integer,
	FOREIGN KEY (`ensemble_id`) REFERENCES `ensembles`(`id`) ON UPDATE no action ON DELETE no action
);
