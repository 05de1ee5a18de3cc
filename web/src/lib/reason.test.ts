import { describe, expect, it } from 'vitest';
import { reasonText } from './reason';

describe('rejection reasons', () => {
  it('read as words with their details', () => {
    expect(reasonText(null)).toBe('');
    expect(reasonText({ reason: 'duplicate_in_datanet' })).toBe('duplicate in datanet');
    expect(reasonText({ reason: 'low_quality', score_bp: 1200, min_bp: 3000 })).toBe(
      'low quality (score bp 1200, min bp 3000)',
    );
  });
});
