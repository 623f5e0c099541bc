ALTER TABLE `checkpoints` ADD `optimizer_key` text;--> statement-breakpoint
ALTER TABLE `checkpoints` ADD `optimizer_sha256` text;--> statement-breakpoint
ALTER TABLE `checkpoints` ADD `optimizer_bytes` integer;