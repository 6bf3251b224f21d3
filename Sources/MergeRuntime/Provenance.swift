import MergeModel

/// What an output records of how it was made, in every shard's safetensors `__metadata__`.
///
/// After `format: pt`: the tool and version, the recipe's digest, the seed and, when the merge
/// has a lock file, the lock's digest. `merge inspect` shows them.
public enum Provenance {
  /// `merge <version>`.
  public static let toolKey = "merge_tool"
  /// The SHA-256 of the normalized recipe (``MergeLock/recipeDigest(_:)``).
  public static let recipeKey = "merge_recipe_sha256"
  /// The seed of the random methods.
  public static let seedKey = "merge_seed"
  /// The SHA-256 of the lock's inputs (``MergeLock/inputDigest``).
  public static let lockKey = "merge_lock_sha256"

  /// The metadata of an output of the recipe `recipeText` run with `seed` (and `lock`).
  public static func metadata(recipeText: String, seed: UInt64, lock: MergeLock?)
    -> [(String, String)]
  {
    metadata(recipeText: recipeText, seed: seed, lockDigest: lock?.inputDigest)
  }

  /// The metadata with the lock named by `lockDigest` (`merge plan` prices a header with a
  /// digest of the same length without hashing the inputs).
  public static func metadata(recipeText: String, seed: UInt64, lockDigest: String?)
    -> [(String, String)]
  {
    var entries = ShardLayout.defaultMetadata
    entries.append((toolKey, Tool.description))
    entries.append((recipeKey, MergeLock.recipeDigest(recipeText)))
    entries.append((seedKey, String(seed)))
    if let lockDigest { entries.append((lockKey, lockDigest)) }
    return entries
  }
}
