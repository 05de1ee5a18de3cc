// The shell served by a real `trib node` at `/`: navigation, the overview
// with the chain's status, a deep link, an API error shown in words,
// keyboard navigation, at laptop and phone widths.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { LAPTOP, PHONE, open, shot, type Session } from './browser';

describe('the shell at laptop width', () => {
  let s: Session;
  beforeAll(async () => {
    s = await open(LAPTOP);
  });
  afterAll(async () => s?.close());

  it('serves the app at / with the chain status and latest blocks', async () => {
    const { page, baseUrl } = s;
    const resp = await page.goto(baseUrl + '/');
    expect(resp?.status()).toBe(200);
    expect(resp?.headers()['content-security-policy']).toContain("default-src 'self'");
    await page.getByRole('heading', { name: 'Overview' }).waitFor();
    await expect.poll(() => page.getByTestId('chain-id').textContent()).toBe('tributary-dev');
    await page.getByRole('heading', { name: 'Latest blocks' }).waitFor();
    expect(await page.getByRole('link', { name: 'Overview' }).getAttribute('aria-current')).toBe('page');
    await shot(page, 'overview');
    expect(s.errors).toEqual([]);
  });

  it('navigates by keyboard: skip link first, then the main navigation', async () => {
    const { page, baseUrl } = s;
    await page.goto(baseUrl + '/');
    await page.getByRole('heading', { name: 'Overview' }).waitFor();
    await page.keyboard.press('Tab');
    expect(await page.evaluate(() => document.activeElement?.textContent)).toBe('Skip to content');
    await page.keyboard.press('Tab');
    await page.keyboard.press('Tab');
    expect(await page.evaluate(() => document.activeElement?.textContent)).toBe('Overview');
    await page.keyboard.press('Tab');
    expect(await page.evaluate(() => document.activeElement?.textContent)).toBe('Wallet');
    await page.keyboard.press('Enter');
    await page.waitForURL(baseUrl + '/wallet');
  });

  it('shows an unknown page and an API error in words, not a blank page', async () => {
    const { page, baseUrl } = s;
    await page.goto(baseUrl + '/no/such/page');
    await page.getByRole('heading', { name: 'Page not found' }).waitFor();
    // The API's typed 404 body reaches the page as its message.
    const res = await page.evaluate(async () => (await fetch('/v1/nope')).json());
    expect(res.error.code).toBe('not_found');
  });
});

describe('the shell at phone width', () => {
  let s: Session;
  beforeAll(async () => {
    s = await open(PHONE);
  });
  afterAll(async () => s?.close());

  it('collapses the navigation behind a labelled menu button', async () => {
    const { page, baseUrl } = s;
    await page.goto(baseUrl + '/');
    await page.getByRole('heading', { name: 'Overview' }).waitFor();
    await expect.poll(() => page.getByTestId('chain-id').textContent()).toBe('tributary-dev');
    const menu = page.getByRole('button', { name: 'Menu' });
    expect(await menu.getAttribute('aria-expanded')).toBe('false');
    expect(await page.getByRole('link', { name: 'Wallet', exact: true }).isVisible()).toBe(false);
    await shot(page, 'overview-phone');
    await menu.click();
    expect(await menu.getAttribute('aria-expanded')).toBe('true');
    await page.getByRole('link', { name: 'Wallet', exact: true }).click();
    await page.waitForURL(baseUrl + '/wallet');
    // No horizontal scrolling at phone width.
    const overflow = await page.evaluate(() => document.documentElement.scrollWidth - window.innerWidth);
    expect(overflow).toBeLessThanOrEqual(0);
    expect(s.errors).toEqual([]);
  });
});
